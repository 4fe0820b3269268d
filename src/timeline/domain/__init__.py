"""Event models, recorded events, money, instants, identity, errors and the policy model: no I/O."""
