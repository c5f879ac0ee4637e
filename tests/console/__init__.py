"""Console tests: Pilot, snapshots, lab."""
