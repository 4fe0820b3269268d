"""The key-encryption key every test store is made with."""

KEK = bytes(range(32))
