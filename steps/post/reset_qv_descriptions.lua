-- Reset QlikView App Descriptions (QAMT Post Migration): post.reset_descriptions
-- for the apps of QlikView documents: the "[qmig-lua:1:qlikview:<qv id>]"
-- marker is removed from the description of each app qvapps.import made
-- and of its published copy (qmig.domain.qlikview.variant).  Run it last: the
-- apps can no longer be found by their marker afterwards (later runs still
-- find them through the cache).  Undo puts the markers back.
local conversion = require "qmig.domain.qlikview.conversion"
local variant = require "qmig.domain.qlikview.variant"

local function live(rec)
  return rec and rec.target_id and rec.status ~= "deleted" and rec.status ~= "failed" and rec.status ~= "in_progress"
end

return variant.of(require "qmig.steps.post.reset_descriptions", {
  name = "post.reset_qv_descriptions",
  object = "qvapp.description", requires = { "qvapps.import" },
  -- the marker names the generated id, the cache key is the document
  items = function(ctx)
    local out = {}
    for _, d in ipairs(conversion.converted(ctx)) do
      local rec = ctx.cache:get("qvapp", d.id)
      if live(rec) then
        local x = { id = "qlikview:" .. d.qv_id, doc = d.id, name = d.name, apps = { rec.target_id } }
        local pub = ctx.cache:get("qvapp.published", d.id)
        if live(pub) and pub.target_id ~= rec.target_id then x.apps[2] = pub.target_id end
        out[#out + 1] = x
      end
    end
    return out
  end,
  key = function(x) return x.doc end,
})
