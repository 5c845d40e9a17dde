"""Loading ``externaldata`` files (local, allow-listed by the compiler) as Arrow tables.

The compiler has already checked that each path is a regular file inside an allowed directory;
here the rows are read with pyarrow and coerced to the declared Kusto columns, then renamed to
the physical names the compiled SQL reads.
"""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from huntsman.compiler.external import ExternalInput
from huntsman.errors import IngestError, QueryExecutionError
from huntsman.store.coerce import arrow_to_schema, records_to_arrow

MAX_BYTES = 100 * 1024 * 1024
"""Kusto documents 100 MB as externaldata's limit; larger files are refused."""


def load_external(inp: ExternalInput) -> pa.Table:
    """The rows of every file of one ``externaldata`` source, as the view ``inp.view`` expects."""
    columns = [(name, ktype) for name, ktype, _ in inp.columns]
    parts = []
    for path in inp.paths:
        p = Path(path)
        if p.stat().st_size > MAX_BYTES:
            raise QueryExecutionError(f"externaldata: {p} is larger than 100 MB")
        try:
            parts.append(_read(p, inp, columns))
        except (IngestError, pa.ArrowInvalid, ValueError) as e:
            raise QueryExecutionError(f"externaldata: cannot read {p}: {e}") from None
    table = pa.concat_tables(parts) if parts else arrow_to_schema(
        pa.table({name: pa.array([], pa.string()) for name, _ in columns}), columns)
    return table.rename_columns([phys for _, _, phys in inp.columns])


def _read(p: Path, inp: ExternalInput, columns: list[tuple[str, str]]) -> pa.Table:
    fmt = inp.format
    if fmt in ("csv", "tsv"):
        read = pcsv.ReadOptions(autogenerate_column_names=True,
                                skip_rows=1 if inp.ignore_first_record else 0)
        parse = pcsv.ParseOptions(delimiter="\t" if fmt == "tsv" else ",")
        convert = pcsv.ConvertOptions(strings_can_be_null=False)
        raw = pcsv.read_csv(p, read_options=read, parse_options=parse, convert_options=convert)
        raw = raw.select(list(range(min(len(columns), raw.num_columns))))
        names = [name for name, _ in columns[:raw.num_columns]]
        raw = raw.rename_columns(names).cast(pa.schema([(n, pa.string()) for n in names]))
        return arrow_to_schema(raw, columns, str(p))
    if fmt == "parquet":
        raw = pq.read_table(p)
        keep = [name for name, _ in columns if name in raw.column_names]
        return arrow_to_schema(raw.select(keep), columns, str(p))
    text = p.read_text("utf-8-sig")
    stripped = text.lstrip()
    records = json.loads(text) if stripped.startswith("[") else \
        [json.loads(line) for line in text.splitlines() if line.strip()]
    declared = {name for name, _ in columns}
    kept = [{k: v for k, v in r.items() if k in declared} for r in records if isinstance(r, dict)]
    return records_to_arrow(kept, columns, str(p))
