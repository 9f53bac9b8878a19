"""Where an app's data comes from: the data sources its load script reads.

The engine keeps an app's data lineage (Doc.GetLineage: one entry per data
source, its `qDiscriminator` the connect statement or the file read), and an
exported QVF carries it.  The simulator uses it to decide what a reload in
Qlik Cloud loads: a reload that reads the same sources as the one that made
the source app's data loads the same rows; one that reads another database
(a script pointed at another connection, a connection whose statement
changed) loads other values in the same shape, a new `variant` of the data
model (engine_data.py makes rows a function of it).

A source is "connect:<statement>" for `LIB CONNECT TO 'name'` (the
connection's statement, so a connection migrated with the same statement is
the same database under another name or space), or "file:<path>" for a
`lib://<connection>/<path>` read (files move with the migration: DataFiles
in Cloud holds the same file under another library).
"""
import hashlib
import re

_BLOCK_COMMENT = re.compile(r"/\*.*?\*/", re.S)
_LINE_COMMENT = re.compile(r"(?:^|(?<=[\s;]))//.*$", re.M)
_LIB_CONNECT = re.compile(r"""\bLIB\s+CONNECT\s+TO\s+(?:'([^']*)'|"([^"]*)"|\[([^\]]*)\]|([^\s;]+))""", re.I)
_LIB_FILE = re.compile(r"""lib://[^/'"\]\r\n]*/([^'"\]\r\n]+)""", re.I)


def sources(script, resolve):
    """The sorted data sources of a load script; resolve(name) gives a
    connection's connect statement (None: not found)."""
    s = _LINE_COMMENT.sub(" ", _BLOCK_COMMENT.sub(" ", script or ""))
    out = set()
    for m in _LIB_CONNECT.finditer(s):
        name = next(g for g in m.groups() if g is not None).strip()
        statement = resolve(name)
        out.add("connect:" + (statement if statement is not None else "?" + name))
    for m in _LIB_FILE.finditer(s):
        out.add("file:" + m.group(1).strip())
    return sorted(out)


def reloaded(data_model, new_sources):
    """The data model a reload reading new_sources leaves: the same when the
    sources are those of the data it has (or its lineage is unknown), else
    the same tables and fields holding other values."""
    lineage = data_model.get("lineage")
    if lineage is None or sorted(lineage) == sorted(new_sources):
        return data_model
    variant = hashlib.sha1("\n".join(sorted(new_sources)).encode()).hexdigest()[:12]
    return dict(data_model, lineage=sorted(new_sources), variant=variant)


# `Label: LOAD a, b AS c ... ;` — the tables a load script makes, for an app
# that holds no data yet (one created by REST with only a script, as a
# converted QlikView document is): its first reload loads them.
_LOAD = re.compile(r"(?im)^\s*([A-Za-z_][\w ]*?)\s*:\s*LOAD\b(.*?)(?:\bFROM\b|\bRESIDENT\b|\bINLINE\b|;)", re.S)
_INLINE = re.compile(r"(?is)INLINE\s*\[\s*([^\r\n]*)\r?\n(.*?)\]")
_AS = re.compile(r"(?is)^.*\bAS\s+\[?([^\]]+?)\]?\s*$")


def _fields(load_list):
    out = []
    for part in load_list.split(","):
        part = part.strip()
        if not part or part == "*":
            continue
        m = _AS.match(part)
        out.append((m.group(1) if m else part).strip("[] "))
    return out


def script_tables(script):
    """[{"name", "no_of_rows", "fields"}] of the labelled LOADs of a script:
    an INLINE table's header and rows as written; any other load's fields as
    listed, with a row count that is a function of the table's name."""
    s = _LINE_COMMENT.sub(" ", _BLOCK_COMMENT.sub(" ", script or ""))
    tables = []
    for m in _LOAD.finditer(s):
        name, fields = m.group(1).strip(), _fields(m.group(2))
        inline = _INLINE.match(s, m.end(2)) if s[m.end(2):m.end(2) + 6].upper() == "INLINE" else None
        rows = 20 + int(hashlib.sha1(name.encode()).hexdigest()[:4], 16) % 180
        if inline:
            fields = fields or _fields(inline.group(1))
            rows = len([ln for ln in inline.group(2).splitlines() if ln.strip()])
        if fields and name.lower() not in ("section access", "section application"):
            tables.append({"name": name, "no_of_rows": rows, "fields": fields})
    return tables
