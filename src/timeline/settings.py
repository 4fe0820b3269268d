"""Every environment variable timeline reads, with its default: read once, by an interface, and passed down."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from timeline.crypto import KekSource
from timeline.domain.policy import DEFAULT_POLICY
from timeline.store import DEFAULT_URL


class Settings(BaseSettings):
    """``TIMELINE_*`` variables; an empty variable counts as unset. Command-line options beat them."""

    model_config = SettingsConfigDict(env_prefix="TIMELINE_", env_ignore_empty=True, extra="ignore", frozen=True)

    db: str = Field(DEFAULT_URL, description="the event store's URL: sqlite:///PATH or postgresql://…")
    kek: SecretStr | None = Field(None, description="the key-encryption key, base64url of 32 bytes")
    kek_file: Path | None = Field(None, description="a key file to use instead of the one beside the database")
    policy: str = Field(DEFAULT_POLICY, description="policy id or .json file")
    read_db: str | None = Field(None, description="the read models' PostgreSQL database (default: db)")
    kafka: str = Field("localhost:9092", description="Kafka bootstrap servers, host:port[,…]")
    topic: str = Field("customer-events", description="the topic the relay publishes to")
    log_json: bool = Field(False, description="serve, relay and consume log one JSON object per line")

    def store_url(self, option: str | None = None) -> str:
        """``--db`` if given, else ``TIMELINE_DB``, else ``./timeline.db``."""
        return option or self.db

    def policy_name(self, option: str | None = None) -> str:
        return option or self.policy

    def read_model_url(self, option: str | None = None) -> str:
        """``--db`` of the read-model commands, else ``TIMELINE_READ_DB``, else the store's."""
        return option or self.read_db or self.db

    @property
    def kek_source(self) -> KekSource:
        return KekSource(self.kek.get_secret_value() if self.kek else None, self.kek_file)

    @classmethod
    def variables(cls) -> list[str]:
        """The names of the environment variables, ``TIMELINE_DB`` first."""
        prefix = cls.model_config.get("env_prefix", "")
        return [f"{prefix}{name}".upper() for name in cls.model_fields]
