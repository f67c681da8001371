"""The command line: `open-clanker gateway | status | send | chat | config-* | pairing`."""
