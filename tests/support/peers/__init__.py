"""Real peers for end-to-end tests: servers the tests start, own and stop (nginx, lighttpd, a fault server)."""
