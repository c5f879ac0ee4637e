"""Lab integration tests: real sshd, dockerd, containerd, git and egress proxies in network namespaces."""
