"""The endpoints, by what they serve: customers, events, operations."""
