-- Delete QlikView Applications (QAMT "Delete QlikView Applications"):
-- apps.delete on the QlikView side (qmig.domain.qlikview.variant): every app this
-- project made for a QlikView document (kinds "qvapp", "qvapp.published")
-- and every app in the tenant carrying the marker of a document this
-- project converted ("[qmig-lua:1:qlikview:<qv id>]"), personal and shared
-- spaces alike.  Apps of other markers are never touched; the deleted
-- apps' records (and their reloads, descriptions) are marked deleted, so a
-- later qvapps.import makes them again.  Irreversible, as apps.delete.
local conversion = require "qmig.domain.qlikview.conversion"
local retrieve = require "qmig.clients.retrieve"
local variant = require "qmig.domain.qlikview.variant"

local function live(rec)
  return rec.target_id and rec.status ~= "deleted" and rec.status ~= "failed"
end

return variant.of(require "qmig.steps.apps.delete", {
  name = "qvapps.delete", object = "qvapp.delete",
  requires = {},
  items = function(ctx)
    local by_doc, doc_of = {}, {}
    local function add(doc, app_id, kind)
      local x = by_doc[doc]
      if not x then
        x = { id = doc, apps = {}, kinds = {} }
        by_doc[doc] = x
      end
      if not x.kinds[app_id] then x.apps[#x.apps + 1] = app_id end
      x.kinds[app_id] = x.kinds[app_id] or kind
    end
    for _, d in ipairs(conversion.converted(ctx)) do doc_of["qlikview:" .. d.qv_id] = d.id end
    for _, kind in ipairs { "app", "app.published" } do
      for _, rec in ipairs(ctx.cache:items(variant.KINDS[kind])) do
        if live(rec) then add(rec.source_id, rec.target_id, kind) end
      end
    end
    for item in ctx.target:each("items", { resourceType = "app", query = "[qmig-lua:" }) do
      local doc = doc_of[retrieve.read_marker(item.description) or ""]
      if doc then add(doc, item.resourceId, "marker") end
    end
    local out = {}
    for _, x in pairs(by_doc) do
      table.sort(x.apps)
      out[#out + 1] = x
    end
    table.sort(out, function(a, b) return a.id < b.id end)
    return out
  end,
})
