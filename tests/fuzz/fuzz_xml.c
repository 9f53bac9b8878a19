/*
** fuzz_xml.c — bytes -> qmig.xml.decode (libexpat behind src/lxml.c, what
** reads every QlikView -prj file).  Must hold (tests/fuzz/xml_oracle.lua):
** decode never raises; a failure is nil, "name:line:col: msg", "xml"; a
** decoded tree written back out decodes to the same tree; and for inputs
** in a small subset of XML (printable ASCII, no declarations, references,
** comments or CDATA) an independent reader written for this check accepts
** exactly the documents expat accepts, with the same tree.
*/
#define FUZZ_NAME "fuzz_xml"
#define FUZZ_LUA \
  "local xml = require 'qmig.xml'\n" \
  "local oracle = dofile(require('qmig').home .. '/tests/fuzz/xml_oracle.lua')\n" \
  "return function(s) oracle.check(xml, s) end\n"
#include "driver.h"
