"""Everything that leaves the service: threshold events, dead letters, late events, statements."""
