"""The two reads every collection of documents has: all of them, and one by name."""
from __future__ import annotations

from fastapi import APIRouter, Depends

from sc_actors.model import Document

from ..deps import Collection, StateDBApi, get_statedb
from ..schemas import PathName


def add_reads(router: APIRouter, collection: Collection, singular: str) -> None:
    """`GET {prefix}/` (also without the slash) and `GET {prefix}/{name}` on `router`.

    Added where the router's own routes are declared, so a more specific route
    declared before keeps its precedence.
    """

    @router.get("/", summary=f"All {singular}s", name=f"list_{collection}")
    @router.get("", include_in_schema=False, name=f"list_{collection}_no_slash")
    async def list_all(db: StateDBApi = Depends(get_statedb)) -> list[Document]:
        return await db.list(collection)

    @router.get("/{name}", summary=f"One {singular}", name=f"get_one_{collection}")
    async def get_one(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
        return await db.get(collection, name)
