"""The Kafka relay: :mod:`.relay` publishes the store's log, :mod:`.positions` remembers how far, :mod:`.producer`."""
