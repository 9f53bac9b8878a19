"""A generated QlikView estate: a share of documents with -prj folders, and
each chart's export from QlikView (tests/qliksim/qlikview.py), for the
QlikView pipeline's tests at scale (qvapps.convert ... qvapps.validate).

    estate.write(root, documents, connections, seed) -> {"share", "exports", "documents": [...]}

root/share/<department>/<name>.qvw with <name>-prj/ beside it:
  - every document loads through one of the site's data connections (a
    generated site's `data_connections`, by name), with labelled LOADs whose
    fields the simulated engine evaluates (engine_data's field kinds),
    variables, a drill-down and a cyclic group, and charts of several types
    (bar, line, pie, straight and pivot table, a gauge with one expression);
  - one document ("Legacy Macros") has what Qlik Sense cannot carry: a macro
    module, document triggers, a container, a button, a scatter chart,
    bookmarks and Section Access;
  - one ("Hostile") has a QlikViewProject.xml that declares an entity,
    charts nested deeper than any parser should follow and an attribute of
    2 MiB: the converter must refuse it, naming the file and line.
root/exports/<document path without .qvw>/<chart id>.csv: every chart of
every document but the hostile one, as the simulated engine computes it on
the data the document's script loads (so equal means equal).
The output is a pure function of the arguments.
"""
import os
import random

import qlikview

DEPARTMENTS = ["Finance", "Sales", "Operations", "HR"]
TABLES = [("Orders", ["OrderID", "Region", "Country", "Product", "Amount", "Quantity"]),
          ("Budget", ["BudgetKey", "Department", "Month", "Budget", "Cost"])]
HEAD = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _esc(s):
    return str(s).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _put(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        f.write(text)


def script(connection, i):
    lines = ["///$tab Main", "SET ThousandSep=',';", "SET DecimalSep='.';", "",
             "LIB CONNECT TO '%s';" % connection.replace("'", "''"), ""]
    for name, fields in TABLES:
        # a table name of the document's own: its rows and values are its own (engine_data)
        lines += [f"{name}{i:03d}:", "LOAD " + ", ".join(fields) + ";",
                  "SQL SELECT " + ", ".join(fields) + f" FROM dbo.{name};", ""]
    return "\n".join(lines)


def chart_xml(title, mode, dims, exprs):
    """dims: [(name, "IS_FIELD" | "IS_GROUP", title)], exprs: [(definition, label)]"""
    d = "".join(f"<ChartDimensionDataDef><PseudoDef><Name>{_esc(n)}</Name><Type>{k}</Type></PseudoDef>"
                f"<Title><v>{_esc(t)}</v></Title></ChartDimensionDataDef>\n" for n, k, t in dims)
    e = "".join(f"<MainExpressionData><Data><ExpressionData><Definition><v>{_esc(x)}</v></Definition>"
                f"<Enable>true</Enable></ExpressionData><ExpressionVisual><Label><v>{_esc(lab)}</v></Label>"
                f"</ExpressionVisual></Data></MainExpressionData>\n" for x, lab in exprs)
    return (HEAD + f"<GraphProperties>\n<GraphLayout><Frame><Name><v>{_esc(title)}</v></Name></Frame>"
            f"<GraphMode>GRAPH_MODE_{mode}</GraphMode></GraphLayout>\n<Dimensions>\n{d}</Dimensions>\n"
            f"<Expressions>\n{e}</Expressions>\n</GraphProperties>\n")


def charts(rnd):
    """The charts of an ordinary document: {object id: xml}."""
    num = rnd.choice(["Amount", "Quantity"])
    return {
        "CH01": chart_xml("Revenue by region", "BAR", [("Geography", "IS_GROUP", "Geography")],
                          [(f"=Sum({num})", num)]),
        "CH02": chart_xml("Average by product", "LINE", [("Product", "IS_FIELD", "Product")],
                          [("=Avg(Amount)", "Average amount"), ("=Max(Quantity)", "Largest order")]),
        "CH03": chart_xml("Share by country", "PIE", [("Country", "IS_FIELD", "Country")],
                          [("=Sum(Amount)", "Amount")]),
        "CH04": chart_xml("Orders", "STRAIGHT_TABLE", [("Region", "IS_FIELD", "Region"),
                                                        ("Product", "IS_FIELD", "Product")],
                          [("=Count(OrderID)", "Orders"), ("=Sum(Amount)", "Amount")]),
        "CH05": chart_xml("Budget by month", "PIVOT_TABLE", [("Department", "IS_FIELD", "Department"),
                                                              ("Calendar", "IS_GROUP", "Calendar")],
                          [("=Sum(Budget)", "Budget"), ("=Sum(Cost)", "Cost")]),
        "CH06": chart_xml("Total orders", "GAUGE", [], [("=Count(OrderID)", "Orders")]),
    }


def project_xml(objects):
    rows = "".join(f"<PrjFrameParentDef><ObjectId>Document\\{o}</ObjectId></PrjFrameParentDef>\n" for o in objects)
    return (HEAD + "<PrjQlikViewProject>\n<SHEETS>\n<PrjSheetProperties><SheetId>Document\\SH01</SheetId>"
            f"<ChildObjects>\n{rows}</ChildObjects></PrjSheetProperties>\n</SHEETS>\n</PrjQlikViewProject>\n")


def doc_properties(i, triggers=False):
    return (HEAD + "<DocProperties>\n<Variables>\n"
            f"<VariableProperties><Name>vYear</Name><RawValue>{2020 + i % 5}</RawValue>"
            "<Comment>Reporting year</Comment></VariableProperties>\n"
            "<VariableProperties><Name>vTarget</Name><RawValue>=Sum(Amount) * 1.1</RawValue>"
            "<Comment></Comment></VariableProperties>\n</Variables>\n<Groups>\n"
            "<GroupProperties><Name>Geography</Name><IsCyclic>false</IsCyclic><FieldDefs>"
            "<FieldDefinition><Name>Region</Name></FieldDefinition>"
            "<FieldDefinition><Name>Country</Name></FieldDefinition></FieldDefs></GroupProperties>\n"
            "<GroupProperties><Name>Calendar</Name><IsCyclic>true</IsCyclic><FieldDefs>"
            "<FieldDefinition><Name>Month</Name></FieldDefinition>"
            "<FieldDefinition><Name>Department</Name></FieldDefinition></FieldDefs></GroupProperties>\n"
            "</Groups>\n"
            + ("<OnOpenActions><ActionProperties><Type>RUN_MACRO</Type><Macro>Refresh</Macro>"
               "</ActionProperties></OnOpenActions>\n" if triggers else "")
            + "</DocProperties>\n")


def write_document(share, rel, files):
    prj = os.path.join(share, rel[:-4] + "-prj")
    _put(os.path.join(share, rel), "(a QlikView document: binary, never read)\n")
    for name, text in files.items():
        _put(os.path.join(prj, name), text)


def ordinary(i, connection, rnd, extra=None):
    objects = dict(charts(rnd))
    objects["LB01"] = HEAD + "<ListBoxProperties><Name>Region</Name></ListBoxProperties>\n"
    objects.update(extra or {})
    files = {"QlikViewProject.xml": project_xml(sorted(objects)), "DocProperties.xml": doc_properties(i),
             "AllProperties.xml": HEAD + "<AllProperties>\n</AllProperties>\n",
             "DocInternals.xml": HEAD + "<DocInternals>\n</DocInternals>\n",
             "TopLayout.xml": HEAD + "<TopLayout>\n</TopLayout>\n",
             "SH01.xml": HEAD + "<SheetProperties><Name>Main</Name></SheetProperties>\n",
             "LoadScript.txt": script(connection, i)}
    files.update({f"{o}.xml": x for o, x in objects.items()})
    return files


def hostile():
    deep = "<a>" * 5000 + "</a>" * 5000
    huge = "x" * (2 * 1024 * 1024)
    return {"QlikViewProject.xml": HEAD + '<!DOCTYPE PrjQlikViewProject [\n<!ENTITY lol "lol">\n'
            '<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">\n]>\n'
            "<PrjQlikViewProject>&lol2;</PrjQlikViewProject>\n",
            "DocProperties.xml": HEAD + f"<DocProperties>{deep}</DocProperties>\n",
            "CH01.xml": HEAD + f'<GraphProperties note="{huge}"/>\n',
            "LoadScript.txt": "T: LOAD * INLINE [\nA\n1\n];\n"}


def write(root, documents, connections, seed=1):
    """The estate under root; connections: the site's data connection names."""
    rnd = random.Random(seed)
    share, exports = os.path.join(root, "share"), os.path.join(root, "exports")
    names = list(connections) or ["Sales DB"]
    docs = []
    for i in range(documents):
        rel = f"{DEPARTMENTS[i % len(DEPARTMENTS)]}/Document {i:03d}.qvw"
        write_document(share, rel, ordinary(i, names[(i * 7) % len(names)], rnd))
        docs.append(rel)
    unsupported = {
        "CT01": HEAD + "<ContainerProperties><Objects><ObjectId>Document\\CH01</ObjectId></Objects>"
                       "</ContainerProperties>\n",
        "BU01": HEAD + "<ButtonProperties><Text><v>Reload</v></Text></ButtonProperties>\n",
        "CH07": chart_xml("Amount against quantity", "SCATTER", [("Product", "IS_FIELD", "Product")],
                          [("=Sum(Amount)", "Amount"), ("=Sum(Quantity)", "Quantity")]),
    }
    legacy = ordinary(documents, names[0], rnd, unsupported)
    legacy["DocProperties.xml"] = doc_properties(documents, triggers=True)
    legacy["Module.txt"] = "' Clears the selections when the document opens\nSub Refresh\n  ActiveDocument.ClearAll\nEnd Sub\n"
    legacy["DocInternals.xml"] = HEAD + "<DocInternals>\n<DocumentBookmark><Name>EMEA</Name></DocumentBookmark>\n" \
                                        "</DocInternals>\n"
    legacy["LoadScript.txt"] = ("///$tab Section Access\nSection Access;\nLOAD * INLINE [\nACCESS, NTNAME\n"
                                "ADMIN, CORP\\jdoe\n];\nSection Application;\n\n" + legacy["LoadScript.txt"])
    write_document(share, "Operations/Legacy Macros.qvw", legacy)
    docs.append("Operations/Legacy Macros.qvw")
    write_document(share, "Operations/Hostile.qvw", hostile())
    for doc, prj in qlikview.documents(share):
        if doc != "Operations/Hostile.qvw":
            qlikview.write_document_exports(doc, prj, exports)
    return {"share": share, "exports": exports, "documents": docs, "hostile": "Operations/Hostile.qvw"}
