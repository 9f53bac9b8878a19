#!/usr/bin/env python3
"""Reads an .xlsx the way a spreadsheet program does, with the standard
library only (zipfile, xml): prints {"order": [sheet names], "sheets":
{name: [[cell, ...], ...]}} as JSON; a cell is its number or its text,
null when empty.  Used by tests/lua/test_validate.lua and test_demo.lua."""
import json
import re
import sys
import zipfile
import xml.etree.ElementTree as ET

NS = {"m": "http://schemas.openxmlformats.org/spreadsheetml/2006/main",
      "r": "http://schemas.openxmlformats.org/officeDocument/2006/relationships",
      "p": "http://schemas.openxmlformats.org/package/2006/relationships"}


def column(ref):
    n = 0
    for ch in re.match(r"[A-Z]+", ref).group(0):
        n = n * 26 + ord(ch) - 64
    return n - 1


def main(path):
    with zipfile.ZipFile(path) as z:
        assert z.testzip() is None, "a corrupt member"
        book = ET.fromstring(z.read("xl/workbook.xml"))
        rels = ET.fromstring(z.read("xl/_rels/workbook.xml.rels"))
        target = {r.get("Id"): r.get("Target") for r in rels.findall("p:Relationship", NS)}
        strings = []
        if "xl/sharedStrings.xml" in z.namelist():
            for si in ET.fromstring(z.read("xl/sharedStrings.xml")).findall("m:si", NS):
                strings.append("".join(t.text or "" for t in si.iter("{%s}t" % NS["m"])))
        order, sheets = [], {}
        for sh in book.find("m:sheets", NS):
            name = sh.get("name")
            rid = sh.get("{%s}id" % NS["r"])
            root = ET.fromstring(z.read("xl/" + target[rid].lstrip("/").removeprefix("xl/")))
            rows = []
            for row in root.iter("{%s}row" % NS["m"]):
                cells = []
                for c in row.findall("m:c", NS):
                    i = column(c.get("r"))
                    while len(cells) < i:
                        cells.append(None)
                    v = c.find("m:v", NS)
                    if c.get("t") == "s":
                        cells.append(strings[int(v.text)])
                    elif c.get("t") == "inlineStr":
                        cells.append("".join(t.text or "" for t in c.iter("{%s}t" % NS["m"])))
                    elif v is not None:
                        num = float(v.text)
                        cells.append(int(num) if num.is_integer() else num)
                    else:
                        cells.append(None)
                rows.append(cells)
            order.append(name)
            sheets[name] = rows
    print(json.dumps({"order": order, "sheets": sheets}))


if __name__ == "__main__":
    main(sys.argv[1])
