"""The lab: real hosts (network namespaces), git remote, egress proxies and a k3s stand-in on one machine."""
