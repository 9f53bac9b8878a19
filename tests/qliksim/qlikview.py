"""QlikView documents on the simulator's side: what a document's charts
show, as QlikView's "Export..." writes them (docs/qlikview.md, "Validating
converted charts"), computed the way the simulated engine computes the
converted app's hypercubes, so that equal means equal.

A document's -prj folder is read here with xml.etree, independently of
the product's reader: its load script, groups (GroupProperties) and charts
(CH*.xml: GraphMode, dimensions, expressions with their labels).  The
data is what the simulated Cloud app holds after its first reload:
`{"tables": lineage.script_tables(script)}` (tests/qliksim/lineage.py),
evaluated by engine_data's hypercube.

    python3 tests/qliksim/qlikview.py exports SHARE OUT
writes OUT/<document path without .qvw>/<chart id>.csv for every chart of
every document of SHARE that has a -prj folder.
"""
import csv
import io
import os
import sys
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import engine_data  # noqa: E402
import lineage  # noqa: E402


def _text(el, path):
    node = el.find(path) if el is not None else None
    if node is None:
        return ""
    v = node.find("v")
    return ((v if v is not None else node).text or "").strip()


def read_prj(prj):
    """{"script", "groups": {name: [fields]}, "charts": [{"id", "mode", "title",
    "dims": [(title, field)], "measures": [(label, expression)]}]}"""
    with open(os.path.join(prj, "LoadScript.txt"), encoding="utf-8-sig") as f:
        script = f.read()
    groups = {}
    for name in ("DocProperties.xml", "AllProperties.xml"):
        path = os.path.join(prj, name)
        if not os.path.exists(path):
            continue
        for g in ET.parse(path).getroot().iter("GroupProperties"):
            fields = [_text(fd, "Name") for fd in g.iter("FieldDefinition")]
            groups.setdefault(_text(g, "Name"), [f for f in fields if f])
    charts = []
    for name in sorted(os.listdir(prj)):
        if not (name.startswith("CH") and name.endswith(".xml")):
            continue
        root = ET.parse(os.path.join(prj, name)).getroot()
        dims = []
        for d in root.iter("ChartDimensionDataDef"):
            field, kind = _text(d, "PseudoDef/Name"), _text(d, "PseudoDef/Type")
            if kind == "IS_GROUP":
                field = (groups.get(field) or [field])[0]
            dims.append((_text(d, "Title") or field, field))
        measures = []
        for m in root.iter("MainExpressionData"):
            expr = _text(m, "Data/ExpressionData/Definition").lstrip("=").strip()
            measures.append((_text(m, "Data/ExpressionVisual/Label") or expr, expr))
        charts.append({"id": name[:-4], "mode": _text(root, "GraphLayout/GraphMode"),
                       "title": _text(root, "GraphLayout/Frame/Name"), "dims": dims, "measures": measures})
    return {"script": script, "groups": groups, "charts": charts}


def chart_rows(script, chart):
    """(header, rows of displayed values) of a chart on the script's data."""
    model = engine_data.model_for({"tables": lineage.script_tables(script)})
    hdef = {"qDimensions": [{"qDef": {"qFieldDefs": [f]}} for _, f in chart["dims"]],
            "qMeasures": [{"qDef": {"qDef": e, "qLabel": label}} for label, e in chart["measures"]]}
    _, _, rows = model.hypercube(hdef)
    header = [t for t, _ in chart["dims"]] + [label for label, _ in chart["measures"]]
    return header, [[cell["qText"] for cell in row] for row in rows]


def export_text(header, rows):
    """A Comma Delimited export: a header row, then the rows (RFC 4180 quoting)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\r\n")
    w.writerow(header)
    w.writerows(rows)
    return out.getvalue()


def documents(share):
    """(document path below the share, its -prj folder) of every document with one."""
    for folder, dirs, files in os.walk(share):
        dirs.sort()
        for name in sorted(files):
            if name.lower().endswith(".qvw"):
                prj = os.path.join(folder, name[:-4] + "-prj")
                if os.path.isdir(prj):
                    yield os.path.relpath(os.path.join(folder, name), share).replace(os.sep, "/"), prj


def write_document_exports(doc, prj, out):
    """Every chart's export of one document; the paths written."""
    p = read_prj(prj)
    folder = os.path.join(out, doc[:-4])
    os.makedirs(folder, exist_ok=True)
    written = []
    for chart in p["charts"]:
        path = os.path.join(folder, chart["id"] + ".csv")
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(export_text(*chart_rows(p["script"], chart)))
        written.append(path)
    return written


def write_exports(share, out):
    """Every chart's export of every document of the share; the paths written."""
    written = []
    for doc, prj in documents(share):
        written += write_document_exports(doc, prj, out)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "exports":
        sys.exit("usage: qlikview.py exports SHARE OUT")
    for p in write_exports(sys.argv[2], sys.argv[3]):
        print(p)
