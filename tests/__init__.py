"""unidesk-tui tests: unit, real-git integration, console (Pilot), and lab (real hosts) suites."""
