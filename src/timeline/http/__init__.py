"""The HTTP interface: the engine as a service (``timeline serve``), over the same application layer as the CLI."""
