"""A tenant's library: saved queries (personal or shared, in folders) and saved functions.

Both carry a ``version`` for optimistic concurrency: an update names the version it was made
from, and fails with ``ConflictError`` when someone saved in between (the check and the write
are one ``UPDATE ... WHERE version = :v``, so it holds across processes).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from huntsman.state.base import IDENTIFIER, StateBase, check_text
from huntsman.state.errors import ConflictError, NotFoundError, StateError
from huntsman.state.info import FunctionInfo, SavedQueryInfo
from huntsman.state.models import SavedFunction, SavedQuery, Tenant, utcnow

SHARED = "shared"
_QUERY_FIELDS = ("name", "query", "folder", "shared", "description")
_FUNCTION_FIELDS = ("name", "body", "parameters", "description")
Parameter = tuple[str, str, str | None]


def _scope(owner: str, shared: bool) -> str:
    return SHARED if shared else f"user:{owner}"


def _folder(folder: str) -> str:
    """``"a/b/"`` and ``" /a/b"`` are the same folder ``"a/b"``; the root is ``""``."""
    folder = check_text("folder", folder, max_len=256, empty=True)
    parts = [p.strip() for p in folder.split("/")]
    return "/".join(p for p in parts if p)


def _query_info(q: SavedQuery, tenant: str) -> SavedQueryInfo:
    return SavedQueryInfo(id=q.id, tenant=tenant, name=q.name, query=q.query, folder=q.folder,
                          shared=q.scope == SHARED, description=q.description, owner=q.owner,
                          created_by=q.created_by, created_at=q.created_at,
                          updated_by=q.updated_by, updated_at=q.updated_at, version=q.version)


def _function_info(f: SavedFunction, tenant: str) -> FunctionInfo:
    params = tuple((str(p[0]), str(p[1]), None if p[2] is None else str(p[2]))
                   for p in f.parameters)
    return FunctionInfo(tenant=tenant, name=f.name, body=f.body, parameters=params,
                        description=f.description, version=f.version,
                        created_by=f.created_by, created_at=f.created_at,
                        updated_by=f.updated_by, updated_at=f.updated_at)


def check_parameters(parameters: Sequence[Any]) -> list[list[str | None]]:
    """``[(name, type, default|None), ...]`` (or ``(name, type)``) as JSON-ready lists."""
    if isinstance(parameters, (str, bytes)):
        raise StateError("function parameters must be a list of (name, type, default) entries")
    checked: list[list[str | None]] = []
    seen: set[str] = set()
    for i, p in enumerate(parameters, 1):
        if isinstance(p, dict):
            p = (p.get("name"), p.get("type"), p.get("default"))
        if not isinstance(p, (list, tuple)) or len(p) not in (2, 3):
            raise StateError(f"function parameter {i} must be (name, type, default), not {p!r}")
        name, kind = p[0], p[1]
        default = p[2] if len(p) == 3 else None
        if not isinstance(name, str) or not IDENTIFIER.match(name):
            raise StateError(f"function parameter {i} has an invalid name {name!r}")
        if name.lower() in seen:
            raise StateError(f"function parameter {name!r} appears twice")
        seen.add(name.lower())
        if not isinstance(kind, str) or not kind.strip():
            raise StateError(f"function parameter {name!r} needs a type")
        if default is not None and not isinstance(default, str):
            raise StateError(f"function parameter {name!r}: the default must be a KQL literal "
                             f"as text, e.g. \"10\" or \"'x'\", not {default!r}")
        if default is None and any(c[2] is not None for c in checked):
            raise StateError(f"function parameter {name!r} has no default but follows one "
                             f"that does: parameters with defaults come last")
        checked.append([name, kind.strip(), default])
    return checked


def _principal(user: str) -> str:
    """Who acts: a user name or an app's subject, as the server's Principal gives it."""
    if not isinstance(user, str) or not user.strip() or len(user) > 128:
        raise StateError(f"invalid principal {user!r}: 1-128 characters")
    return user


def _function_name(name: str) -> str:
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise StateError(f"invalid function name {name!r}: use letters, digits and '_', "
                         f"starting with a letter or '_'")
    return name


class Library(StateBase):
    """Saved queries and saved functions, every call scoped to one tenant."""

    # -- saved queries ---------------------------------------------------------------------

    @staticmethod
    def _visible(tenant_id: int, user: str) -> Any:
        return (SavedQuery.tenant_id == tenant_id) & or_(
            SavedQuery.scope == SHARED, SavedQuery.scope == _scope(user, False))

    def _query_row(self, s: Session, tenant: Tenant, user: str, query_id: str) -> SavedQuery:
        row = s.scalar(select(SavedQuery).where(SavedQuery.id == str(query_id),
                                                self._visible(tenant.id, user)))
        if row is None:
            raise NotFoundError(f"no saved query {query_id!r} in tenant {tenant.name!r}")
        return row

    def list_queries(self, tenant: str, user: str) -> list[SavedQueryInfo]:
        """The user's personal queries and the tenant's shared ones, by folder and name."""
        with self._session() as s:
            t = self._tenant(s, tenant)
            rows = s.scalars(select(SavedQuery).where(self._visible(t.id, user))
                             .order_by(SavedQuery.folder, SavedQuery.name, SavedQuery.scope))
            return [_query_info(q, t.name) for q in rows]

    def get_query(self, tenant: str, user: str, query_id: str) -> SavedQueryInfo:
        with self._session() as s:
            t = self._tenant(s, tenant)
            return _query_info(self._query_row(s, t, user, query_id), t.name)

    def create_query(self, tenant: str, user: str, *, name: str, query: str, folder: str = "",
                     shared: bool = False, description: str = "") -> SavedQueryInfo:
        _principal(user)
        name = check_text("query name", name, max_len=256)
        text = check_text("query text", query, max_len=1_000_000)
        folder = _folder(folder)
        description = check_text("description", description, max_len=10_000, empty=True)
        where = "shared" if shared else "personal"
        with self._session(conflict=f"a {where} saved query named {name!r} already exists in "
                                    f"folder {folder!r}") as s:
            t = self._tenant(s, tenant)
            now = utcnow()
            row = SavedQuery(id=str(uuid.uuid4()), tenant_id=t.id, scope=_scope(user, shared),
                             owner=user, folder=folder, name=name, query=text,
                             description=description, created_by=user, created_at=now,
                             updated_by=user, updated_at=now, version=1)
            s.add(row)
            s.flush()
            return _query_info(row, t.name)

    def update_query(self, tenant: str, user: str, query_id: str, *, version: int,
                     **changes: Any) -> SavedQueryInfo:
        """Change ``name``, ``query``, ``folder``, ``shared`` or ``description``. ``version`` is
        the version the change was made from; ``ConflictError`` if it is no longer current."""
        _principal(user)
        unknown = set(changes) - set(_QUERY_FIELDS)
        if unknown:
            raise StateError(f"cannot change {', '.join(sorted(unknown))} of a saved query: "
                             f"only {', '.join(_QUERY_FIELDS)}")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = check_text("query name", changes["name"], max_len=256)
        if "query" in changes:
            values["query"] = check_text("query text", changes["query"], max_len=1_000_000)
        if "folder" in changes:
            values["folder"] = _folder(changes["folder"])
        if "description" in changes:
            values["description"] = check_text("description", changes["description"],
                                               max_len=10_000, empty=True)
        with self._session(conflict="a saved query with that name already exists in that "
                                    "folder") as s:
            t = self._tenant(s, tenant)
            row = self._query_row(s, t, user, query_id)
            if "shared" in changes:
                values["scope"] = _scope(row.owner, bool(changes["shared"]))
            values.update(version=SavedQuery.version + 1, updated_by=user, updated_at=utcnow())
            result = s.execute(update(SavedQuery)
                               .where(SavedQuery.id == row.id, SavedQuery.version == version)
                               .values(**values).execution_options(synchronize_session=False))
            if getattr(result, "rowcount", 0) != 1:
                raise ConflictError(f"saved query {row.name!r} was changed by someone else "
                                    f"(you edited version {version}, it is now "
                                    f"{self._current_version(s, SavedQuery, row.id)}): "
                                    f"reload it and save again")
            s.expire_all()
            return _query_info(self._query_row(s, t, user, query_id), t.name)

    @staticmethod
    def _current_version(s: Session, model: Any, key: Any) -> int:
        return int(s.scalar(select(model.version).where(model.id == key)) or 0)

    def delete_query(self, tenant: str, user: str, query_id: str) -> None:
        with self._session() as s:
            t = self._tenant(s, tenant)
            row = self._query_row(s, t, user, query_id)
            s.execute(delete(SavedQuery).where(SavedQuery.id == row.id))

    # -- saved functions -------------------------------------------------------------------

    def _function_row(self, s: Session, tenant: Tenant, name: str) -> SavedFunction:
        row = s.scalar(select(SavedFunction).where(SavedFunction.tenant_id == tenant.id,
                                                   SavedFunction.name == name))
        if row is None:
            raise NotFoundError(f"no function {name!r} in tenant {tenant.name!r}")
        return row

    def list_functions(self, tenant: str) -> list[FunctionInfo]:
        with self._session() as s:
            t = self._tenant(s, tenant)
            rows = s.scalars(select(SavedFunction).where(SavedFunction.tenant_id == t.id)
                             .order_by(SavedFunction.name))
            return [_function_info(f, t.name) for f in rows]

    def get_function(self, tenant: str, name: str) -> FunctionInfo:
        with self._session() as s:
            t = self._tenant(s, tenant)
            return _function_info(self._function_row(s, t, name), t.name)

    def create_function(self, tenant: str, user: str, *, name: str, body: str,
                        parameters: Sequence[Any] = (), description: str = "") -> FunctionInfo:
        _principal(user)
        _function_name(name)
        body = check_text("function body", body, max_len=1_000_000)
        params = check_parameters(parameters)
        description = check_text("description", description, max_len=10_000, empty=True)
        with self._session(conflict=f"a function named {name!r} already exists in tenant "
                                    f"{tenant!r}") as s:
            t = self._tenant(s, tenant)
            now = utcnow()
            row = SavedFunction(tenant_id=t.id, name=name, body=body, parameters=params,
                                description=description, created_by=user, created_at=now,
                                updated_by=user, updated_at=now, version=1)
            s.add(row)
            s.flush()
            return _function_info(row, t.name)

    def update_function(self, tenant: str, user: str, name: str, /, *, version: int,
                        **changes: Any) -> FunctionInfo:
        """Change ``name`` (rename), ``body``, ``parameters`` or ``description``; ``version`` as
        for saved queries."""
        _principal(user)
        unknown = set(changes) - set(_FUNCTION_FIELDS)
        if unknown:
            raise StateError(f"cannot change {', '.join(sorted(unknown))} of a function: "
                             f"only {', '.join(_FUNCTION_FIELDS)}")
        values: dict[str, Any] = {}
        if "name" in changes:
            values["name"] = _function_name(changes["name"])
        if "body" in changes:
            values["body"] = check_text("function body", changes["body"], max_len=1_000_000)
        if "parameters" in changes:
            values["parameters"] = check_parameters(changes["parameters"])
        if "description" in changes:
            values["description"] = check_text("description", changes["description"],
                                               max_len=10_000, empty=True)
        with self._session(conflict=f"a function named {values.get('name')!r} already exists "
                                    f"in tenant {tenant!r}") as s:
            t = self._tenant(s, tenant)
            row = self._function_row(s, t, name)
            values.update(version=SavedFunction.version + 1, updated_by=user,
                          updated_at=utcnow())
            result = s.execute(update(SavedFunction)
                               .where(SavedFunction.id == row.id,
                                      SavedFunction.version == version)
                               .values(**values).execution_options(synchronize_session=False))
            if getattr(result, "rowcount", 0) != 1:
                raise ConflictError(f"function {name!r} was changed by someone else (you "
                                    f"edited version {version}, it is now "
                                    f"{self._current_version(s, SavedFunction, row.id)}): "
                                    f"reload it and save again")
            s.expire_all()
            return _function_info(self._function_row(s, t, values.get("name", name)), t.name)

    def delete_function(self, tenant: str, user: str, name: str) -> None:
        with self._session() as s:
            t = self._tenant(s, tenant)
            row = self._function_row(s, t, name)
            s.execute(delete(SavedFunction).where(SavedFunction.id == row.id))

    def stored_functions(self, tenant: str) -> list[FunctionInfo]:
        """The tenant's functions, ready for the hunting service to turn into
        ``huntsman.kql.stored.StoredFunction(f.name, f.body, f.parameters, f.description)``."""
        return self.list_functions(tenant)
