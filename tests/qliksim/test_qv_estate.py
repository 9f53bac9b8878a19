"""The generated QlikView estate (qv_estate.py) and the chart exports
qlikview.py computes: deterministic, the site's connections in the scripts,
the unsupported and the hostile documents as described, and exports that
hold what the document's data holds (counted here row by row, not through
the hypercube)."""
import csv
import os
import tempfile
import unittest

import engine_data
import generate
import lineage
import qlikview
import qv_estate


def tree(root):
    out = {}
    for folder, _, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


class EstateTests(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        site = generate.generate(apps=2, users=3, streams=1, connections=4, tasks=0)
        self.connections = [dc["name"] for dc in site["qrs"]["data_connections"]]
        self.root = os.path.join(self.tmp.name, "a")
        self.estate = qv_estate.write(self.root, 3, self.connections, seed=5)

    def test_the_same_arguments_write_the_same_estate(self):
        other = os.path.join(self.tmp.name, "b")
        qv_estate.write(other, 3, self.connections, seed=5)
        self.assertEqual(tree(self.root), tree(other))

    def test_scripts_load_through_the_sites_connections(self):
        for doc, prj in qlikview.documents(self.estate["share"]):
            if doc == self.estate["hostile"]:
                continue
            script = qlikview.read_prj(prj)["script"]
            self.assertTrue(any(f"LIB CONNECT TO '{c}';" in script for c in self.connections), doc)
            self.assertEqual(len(lineage.script_tables(script)), 2, doc)

    def test_the_unsupported_and_the_hostile_documents(self):
        share = self.estate["share"]
        legacy = os.path.join(share, "Operations", "Legacy Macros-prj")
        for name in ("Module.txt", "CT01.xml", "BU01.xml", "CH07.xml"):
            self.assertTrue(os.path.exists(os.path.join(legacy, name)), name)
        with open(os.path.join(legacy, "DocProperties.xml")) as f:
            self.assertIn("<OnOpenActions>", f.read())
        hostile = os.path.join(share, "Operations", "Hostile-prj")
        with open(os.path.join(hostile, "QlikViewProject.xml")) as f:
            self.assertIn("<!ENTITY", f.read())
        with open(os.path.join(hostile, "DocProperties.xml")) as f:
            self.assertGreater(f.read().count("<a>"), 256)
        self.assertGreater(os.path.getsize(os.path.join(hostile, "CH01.xml")), 1024 * 1024)
        self.assertFalse(os.path.exists(os.path.join(self.estate["exports"], "Operations", "Hostile")))

    def test_an_export_holds_what_the_data_holds(self):
        doc = self.estate["documents"][0]
        prj = os.path.join(self.estate["share"], doc[:-4] + "-prj")
        tables = lineage.script_tables(qlikview.read_prj(prj)["script"])
        model = engine_data.DataModel({"tables": tables})
        orders = next(t for t in model.tables if t.name.startswith("Orders"))
        region, product = orders.field("Region"), orders.field("Product")
        amount, order_id = orders.field("Amount"), orders.field("OrderID")
        expect = {}
        for i in range(orders.rows):
            k = (region.value(i), product.value(i))
            n, total = expect.get(k, (0, 0))
            expect[k] = (n + 1, total + amount.value(i))
            self.assertEqual(order_id.value(i), i + 1)
        with open(os.path.join(self.estate["exports"], doc[:-4], "CH04.csv"), newline="") as f:
            rows = list(csv.reader(f))
        self.assertEqual(rows[0], ["Region", "Product", "Orders", "Amount"])
        got = {(r[0], r[1]): (int(r[2]), float(r[3])) for r in rows[1:]}
        self.assertEqual(set(got), set(expect))
        for k, (n, total) in expect.items():
            self.assertEqual(got[k][0], n, k)
            self.assertAlmostEqual(got[k][1], total, places=2, msg=k)


if __name__ == "__main__":
    unittest.main()
