"""Read models fed from the topic: consumer groups that keep PostgreSQL views, exactly once per message.

:mod:`.runner` is the poll loop every read model shares, :mod:`.projector` applies a batch,
:mod:`.registry` names the read models (``summary``, ``alerts``) for the CLI.
"""
