-- The conversions qvapps.convert writes into the project folder and the
-- steps after it read: converted/<qv id>/conversion.json (the whole
-- conversion, docs/qlikview.md), script.qvs (the load script as it was)
-- and not-carried.txt (what the document had that the Cloud app will not).
-- <qv id> is the id generated when the document was first retrieved: the
-- description marker of the imported app carries it.
local fs = require "qmig.fs"
local json = require "qmig.json"
local prj = require "qmig.domain.qlikview.prj"

local M = {}

-- The documents of the job's QlikView source that the plan selects.
function M.documents(ctx)
  local src = ctx.job and ctx.job.source and ctx.job.source.qlikview
  if not src then
    error("the job file has no QlikView source: add source.qlikview.folder (docs/qlikview.md)", 0)
  end
  return prj.select(prj.list(src.folder), ctx.plan and ctx.plan.qlikview)
end

-- current(ctx) -> the converted documents (M.converted) that the share
-- still has and the plan still selects.  The steps after qvapps.convert
-- act on these only: a renamed, removed or filtered-out document's app
-- would otherwise be made again (qvapps.import, r21), or reloaded, given
-- an owner and validated after the user deleted it.  qvapps.delete and
-- post.reset_qv_descriptions read M.converted: they still clean up the
-- apps of documents that are gone.
function M.current(ctx)
  local here = {}
  for _, doc in ipairs(M.documents(ctx)) do here[doc.id] = true end
  local out = {}
  for _, item in ipairs(M.converted(ctx)) do
    if here[item.id] then out[#out + 1] = item end
  end
  return out
end

function M.folder(ctx, qv_id) return ctx.project:object_path("converted", qv_id) end

local function arrays(conv)
  for _, k in ipairs { "variables", "dimensions", "measures", "visualizations", "not_carried" } do
    conv[k] = json.array(conv[k])
  end
  for _, v in ipairs(conv.visualizations) do
    v.dimensions, v.measures = json.array(v.dimensions), json.array(v.measures)
  end
  for _, d in ipairs(conv.dimensions) do d.fields = json.array(d.fields) end
  return conv
end

function M.report_text(conv)
  local lines = { "What " .. conv.doc .. " had that its Qlik Sense app does not carry:" }
  for _, n in ipairs(conv.not_carried) do
    lines[#lines + 1] = string.format("- %s (%s): %s", n.object, n.type, n.reason)
  end
  if #conv.not_carried == 0 then lines[#lines + 1] = "- nothing" end
  return table.concat(lines, "\n") .. "\n"
end

function M.write(ctx, conv)
  local dir = M.folder(ctx, conv.id)
  assert(fs.mkdirs(dir, 448))
  local function put(name, data)
    assert(fs.write_file(dir .. "/" .. name, data, { mode = 384, atomic = true }))
  end
  put("script.qvs", conv.script)
  put("not-carried.txt", M.report_text(conv))
  put("conversion.json", json.encode(arrays(conv), { indent = true, sort_keys = true }) .. "\n")
  return dir
end

-- load(ctx, qv_id) -> conversion | nil, why
function M.load(ctx, qv_id)
  local path = M.folder(ctx, qv_id) .. "/conversion.json"
  local text = fs.read_file(path)
  if not text then return nil, path .. " is missing (run qvapps.convert)" end
  local conv, err = json.decode(text)
  if type(conv) ~= "table" then return nil, path .. ": " .. tostring(err) end
  return conv
end

-- The converted documents in the cache: {qv_id, doc, name, folder, ...}.
function M.converted(ctx)
  local out = {}
  for _, rec in ipairs(ctx.cache:items("qvapp.convert")) do
    local d = rec.data
    -- (planned: what a plan's qvapps.convert would convert, so the plan's
    -- later steps show the documents too)
    if type(d) == "table" and d.qv_id and (rec.status == "created" or rec.status == "updated"
        or rec.status == "unchanged" or rec.status == "planned") then
      out[#out + 1] = { id = rec.source_id, qv_id = d.qv_id, name = d.name, folder = d.folder or "",
        doc = rec.source_id }
    end
  end
  table.sort(out, function(a, b) return a.id < b.id end)
  return out
end

return M
