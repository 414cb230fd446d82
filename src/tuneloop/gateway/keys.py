"""Client API keys: created once (the only time the key is shown), stored as a SHA-256 hash,
scoped to tenants and tasks, revoked by id. Keys are 256-bit random, so a plain hash is enough:
there is nothing to guess."""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select

from tuneloop.errors import InputError
from tuneloop.store import GatewayKey, Store
from tuneloop.store.models import utcnow

KEY_PREFIX = "tlk_"


@dataclass(frozen=True)
class KeyScope:
    """What a key may do: empty tuples mean any tenant / any task."""

    key_id: int
    name: str
    tenants: tuple[str, ...]
    tasks: tuple[str, ...]

    def allows_tenant(self, tenant: str | None) -> bool:
        return not self.tenants or tenant in self.tenants

    def allows_task(self, task: str) -> bool:
        return not self.tasks or task in self.tasks

    @property
    def default_tenant(self) -> str | None:
        """A key of exactly one tenant speaks for it when the request names none."""
        return self.tenants[0] if len(self.tenants) == 1 else None


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(
    store: Store, name: str, *, tenants: Sequence[str] = (), tasks: Sequence[str] = ()
) -> tuple[GatewayKey, str]:
    """A new key: (its stored record, the key itself, which is never stored)."""
    if not name.strip() or len(name) > 200:
        raise InputError("a key needs a name of 1 to 200 characters")
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    record = GatewayKey(
        name=name,
        prefix=key[:12],
        key_hash=hash_key(key),
        tenants=sorted(set(tenants)),
        tasks=sorted(set(tasks)),
    )
    with store.session() as session:
        session.add(record)
    return record, key


def list_keys(store: Store, *, include_revoked: bool = False) -> list[GatewayKey]:
    with store.session() as session:
        query = select(GatewayKey).order_by(GatewayKey.id)
        if not include_revoked:
            query = query.where(GatewayKey.revoked_at.is_(None))
        return list(session.scalars(query))


def revoke_key(store: Store, key_id: int) -> GatewayKey:
    with store.session() as session:
        record = session.get(GatewayKey, key_id)
        if record is None:
            raise InputError(f"no gateway key with id {key_id}")
        if record.revoked_at is None:
            record.revoked_at = utcnow()
        return record


def load_scopes(store: Store) -> dict[str, KeyScope]:
    """Active keys by hash (what a running gateway checks requests against)."""
    return {
        record.key_hash: KeyScope(
            record.id, record.name, tuple(record.tenants), tuple(record.tasks)
        )
        for record in list_keys(store)
    }


def find_scope(scopes: dict[str, KeyScope], key: str) -> KeyScope | None:
    """The scope of a presented key (looked up by hash: timing reveals nothing of a key)."""
    return scopes.get(hash_key(key))
