"""The data an app's simulated engine holds, and what the engine computes from it.

An app's `data_model` ({"tables": [{"name", "no_of_rows", "fields"}], "variant"?})
is all there is: the rows are a pure function of (table, field, row, variant),
so an app and its migrated copy (which carries the same data_model) hold the
same data, and a data model with another `variant` (a reload with a changed
script or connection) holds different values in the same shape.  Nothing is
materialized: aggregates iterate the rows, and results are cached.

Field kinds, from the name: `...ID` / `...Id` / `...Key` a key (row + 1),
amounts (Amount, Sales, Price, Cost, Quantity, ...) numbers, others text from a
small vocabulary ("Customer 03").
"""
import hashlib
import json
import math
import re

NUMERIC = re.compile(r"amount|sales|price|cost|quantity|qty|revenue|margin|budget|units|"
                     r"hours|value|total|score|discount|profit", re.I)
KEY = re.compile(r"(id|key)$", re.I)
MAX_CELLS = 10000                 # GetHyperCubeData: cells over all pages of one call


def field_kind(name):
    if KEY.search(name) and not NUMERIC.search(name):
        return "key"
    if NUMERIC.search(name):
        return "number"
    return "text"


def _seed(*parts):
    return int.from_bytes(hashlib.sha1(":".join(map(str, parts)).encode()).digest()[:4], "big")


def _mix(i, seed):
    x = (i * 2654435761 + seed) & 0xFFFFFFFF
    x ^= x >> 13
    x = (x * 0x5BD1E995) & 0xFFFFFFFF
    return x ^ (x >> 15)


class Field:
    def __init__(self, table, name, rows, variant):
        self.name, self.table, self.rows = name, table, rows
        self.kind = field_kind(name)
        self.seed = _seed(table, name, variant)
        self.vocab = 4 + _seed(name) % 13          # 4..16 text values (same for any variant)

    def value(self, i):
        if self.kind == "key":
            return i + 1
        h = _mix(i, self.seed)
        if self.kind == "number":
            return (h % 100000) / 100.0
        return f"{self.name} {1 + h % min(self.vocab, max(1, self.rows)):02d}"


class Table:
    def __init__(self, spec, variant):
        self.name = spec["name"]
        self.rows = int(spec.get("no_of_rows", 0))
        self.fields = [Field(self.name, f, self.rows, variant) for f in spec.get("fields") or []]

    def field(self, name):
        return next((f for f in self.fields if f.name == name), None)


class DataModel:
    """The tables of one data_model; use `model_for` (cached)."""

    def __init__(self, spec):
        variant = spec.get("variant", "")
        self.tables = [Table(t, variant) for t in spec.get("tables") or []]
        self._distinct = {}
        self._cubes = {}

    def find(self, field):
        for t in self.tables:
            f = t.field(field)
            if f is not None:
                return t, f
        return None, None

    def distinct(self, table, field):
        key = (table.name, field.name)
        if key not in self._distinct:
            if field.kind == "key":
                n = table.rows
            elif field.kind == "text":
                n = len({field.value(i) for i in range(min(table.rows, 20000))})
            else:
                n = len({field.value(i) for i in range(table.rows)})
            self._distinct[key] = n
        return self._distinct[key]

    def tables_and_keys(self):
        """GetTablesAndKeys' qtr and qk."""
        owners = {}
        for t in self.tables:
            for f in t.fields:
                owners.setdefault(f.name, []).append(t.name)
        qtr = []
        for t in self.tables:
            fields = []
            for f in t.fields:
                shared = len(owners[f.name]) > 1
                n = self.distinct(t, f)
                fields.append({"qName": f.name, "qnRows": t.rows, "qnTotalDistinctValues": n,
                               "qnPresentDistinctValues": n, "qnNonNulls": t.rows,
                               "qHasNull": False, "qHasDuplicates": n < t.rows,
                               "qIsSynthetic": False,
                               "qKeyType": ("PRIMARY_KEY" if n == t.rows else "ANY_KEY") if shared
                               else "NOT_KEY",
                               "qTags": ["$key"] if shared else
                               (["$numeric"] if f.kind != "text" else ["$text"])})
            qtr.append({"qName": t.name, "qNoOfRows": t.rows, "qLoose": False,
                        "qIsSynthetic": False, "qIsDirectDiscovery": False, "qComment": "",
                        "qFields": fields})
        qk = [{"qKeyFields": [name], "qTables": tabs} for name, tabs in owners.items() if len(tabs) > 1]
        return qtr, qk

    def field_list(self):
        seen, items = set(), []
        for t in self.tables:
            for f in t.fields:
                if f.name in seen:
                    continue
                seen.add(f.name)
                items.append({"qName": f.name, "qCardinal": self.distinct(t, f),
                              "qTags": ["$numeric"] if f.kind != "text" else ["$text"],
                              "qIsHidden": False, "qIsSystem": False, "qSrcTables": [t.name]})
        return items

    # ------------------------------------------------------------ expressions
    def evaluate(self, expr):
        """A number (or None: not computable) for Func([DISTINCT] Field),
        NoOfRows('T'), or a numeric literal."""
        expr = (expr or "").strip().lstrip("=").strip()
        m = re.fullmatch(r"NoOfRows\(\s*'([^']*)'\s*\)", expr, re.I)
        if m:
            t = next((t for t in self.tables if t.name == m.group(1)), None)
            return t.rows if t else None
        try:
            return float(expr) if "." in expr else int(expr)
        except ValueError:
            pass
        agg = parse_agg(expr)
        if agg is None:
            return None
        func, distinct, field = agg
        table, f = self.find(field)
        if f is None:
            return None
        acc = Agg(func, distinct)
        for i in range(table.rows):
            acc.add(f.value(i))
        return acc.result()

    # ------------------------------------------------------------ hypercubes
    def hypercube(self, hdef):
        """(dims info, measure info, sorted rows of cells) for a qHyperCubeDef."""
        key = json.dumps(hdef, sort_keys=True)
        if key in self._cubes:
            return self._cubes[key]
        dims = [((d.get("qDef") or {}).get("qFieldDefs") or [""])[0].lstrip("=")
                for d in hdef.get("qDimensions") or []]
        meas = [(m.get("qDef") or {}).get("qDef", "") for m in hdef.get("qMeasures") or []]
        table = None
        for name in dims:
            table, _ = self.find(name)
            if table is not None:
                break
        if table is None and meas:
            agg = parse_agg(meas[0])
            table = self.find(agg[2])[0] if agg else None
        dim_fields = [table.field(d) if table else None for d in dims]
        aggs = [parse_agg(m) for m in meas]
        m_fields = [table.field(a[2]) if table and a else None for a in aggs]
        groups = {}
        for i in range(table.rows if table else 0):
            k = tuple(f.value(i) if f else None for f in dim_fields)
            accs = groups.get(k)
            if accs is None:
                accs = groups[k] = [Agg(a[0], a[1]) if a else None for a in aggs]
            for acc, f in zip(accs, m_fields):
                if acc is not None and f is not None:
                    acc.add(f.value(i))
        elem = [dict() for _ in dims]
        rows = []
        for k in sorted(groups, key=lambda t: tuple(_sort_key(v) for v in t)):
            row = []
            for j, v in enumerate(k):
                idx = elem[j].setdefault(v, len(elem[j]))
                row.append(dim_cell(v, idx))
            for acc in groups[k]:
                row.append(measure_cell(acc.result() if acc else None))
            rows.append(row)
        dim_info = [{"qFallbackTitle": d, "qCardinal": len(elem[j]), "qGroupFieldDefs": [d],
                     "qSortIndicator": "A", "qMin": "NaN", "qMax": "NaN"} for j, d in enumerate(dims)]
        meas_info = []
        for j, m in enumerate(meas):
            vals = [r[len(dims) + j]["qNum"] for r in rows if isinstance(r[len(dims) + j]["qNum"], (int, float))]
            meas_info.append({"qFallbackTitle": m, "qMin": min(vals) if vals else "NaN",
                              "qMax": max(vals) if vals else "NaN", "qSortIndicator": "N"})
        cube = (dim_info, meas_info, rows)
        if len(self._cubes) > 256:
            self._cubes.clear()
        self._cubes[key] = cube
        return cube


def _sort_key(v):
    return (0, v, "") if isinstance(v, (int, float)) else (1, 0, str(v))


def parse_agg(expr):
    m = re.fullmatch(r"\s*=?\s*(Sum|Count|Avg|Min|Max)\(\s*(DISTINCT\s+)?\[?([^\]\)]+?)\]?\s*\)\s*",
                     expr or "", re.I)
    return (m.group(1).lower(), bool(m.group(2)), m.group(3)) if m else None


class Agg:
    def __init__(self, func, distinct):
        self.func, self.distinct = func, distinct
        self.n, self.total, self.lo, self.hi = 0, 0, None, None
        self.seen = set() if distinct else None

    def add(self, v):
        if self.seen is not None:
            if v in self.seen:
                return
            self.seen.add(v)
        self.n += 1
        if isinstance(v, (int, float)):
            self.total += v
            self.lo = v if self.lo is None or v < self.lo else self.lo
            self.hi = v if self.hi is None or v > self.hi else self.hi

    def result(self):
        if self.func == "count":
            return self.n
        if self.lo is None:
            return None
        value = {"sum": self.total, "avg": self.total / self.n if self.n else None,
                 "min": self.lo, "max": self.hi}[self.func]
        return round(value, 6) if isinstance(value, float) else value


def fmt(v):
    if v is None:
        return "-"
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e15:
        return str(int(v))
    if isinstance(v, float):
        return f"{v:.2f}"
    return str(v)


def dim_cell(v, idx):
    num = v if isinstance(v, (int, float)) else "NaN"
    return {"qText": fmt(v), "qNum": num, "qElemNumber": idx, "qState": "O"}


def measure_cell(v):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return {"qText": "-", "qNum": "NaN", "qElemNumber": -2, "qState": "L", "qIsNull": True}
    return {"qText": fmt(v), "qNum": v, "qElemNumber": 0, "qState": "L"}


_MODELS = {}


def model_for(data_model):
    """The (cached) DataModel of a data_model dict."""
    key = json.dumps(data_model or {}, sort_keys=True)
    model = _MODELS.get(key)
    if model is None:
        if len(_MODELS) > 64:
            _MODELS.clear()
        model = _MODELS[key] = DataModel(data_model or {})
    return model


def charts_for_sheet(sheet_id, model):
    """The charts a sheet carries, derived from its id and the data model so a
    migrated copy of the app has the same ones: a bar chart (a text dimension,
    Sum and Count), a line chart (Avg/Min/Max) and a KPI, per table with a text
    and a number field."""
    charts = []
    for t in model.tables:
        texts = [f for f in t.fields if f.kind == "text"]
        nums = [f for f in t.fields if f.kind == "number"]
        keys = [f for f in t.fields if f.kind == "key"]
        if not texts:
            continue
        dim = texts[0].name
        num = nums[0].name if nums else None
        count_field = (keys or texts)[0].name
        base = hashlib.sha1(f"{sheet_id}:{t.name}".encode()).hexdigest()
        bar = [f"Sum({num})"] if num else []
        charts.append({"id": base[:10] + "bar", "type": "barchart", "title": f"{t.name} by {dim}",
                       "dims": [dim], "measures": bar + [f"Count({count_field})"]})
        if num:
            charts.append({"id": base[10:20] + "line", "type": "linechart",
                           "title": f"{num} range by {dim}", "dims": [dim],
                           "measures": [f"Avg({num})", f"Min({num})", f"Max({num})"]})
            if len(texts) > 1:
                charts.append({"id": base[20:30] + "tbl", "type": "table",
                               "title": f"{t.name} detail", "dims": [dim, texts[1].name],
                               "measures": [f"Sum({num})"]})
        if keys and num and t.rows <= 20000:   # one row per record: a cube that needs paging
            charts.append({"id": base[30:40] + "rec", "type": "table", "title": f"{t.name} records",
                           "dims": [keys[0].name], "measures": [f"Sum({num})"]})
        if len(charts) >= 4:
            break
    return charts


def hypercube_def(chart):
    return {"qDimensions": [{"qDef": {"qFieldDefs": [d]}} for d in chart["dims"]],
            "qMeasures": [{"qDef": {"qDef": m, "qLabel": m}} for m in chart["measures"]],
            "qInitialDataFetch": [], "qMode": "S"}
