-- QRS tags and custom properties -> Cloud tags (after publish).  Cloud tags are public collections: each QRS tag, and
-- each custom-property value as "<Property>:<Value>", becomes a public
-- collection (created or adopted by name), and the Cloud app's item is
-- added to it.  Every Cloud copy of the app gets the tags: the imported
-- app (kind "app") and its published copy (kind "app.published").  Apps
-- not imported yet are skipped with a reason.  See docs/assets.md.
local errors = require "qmig.clients.errors"
local scope = require "qmig.domain.scope"

-- The Cloud tag names of a QRS app, sorted, without duplicates.
local function tag_names(app)
  local set, out = {}, {}
  local function add(n)
    if type(n) == "string" and n ~= "" and not set[n] then set[n] = true; out[#out + 1] = n end
  end
  for _, n in ipairs(scope.tags(app)) do add(n) end
  for _, cp in ipairs(app.customProperties or {}) do
    local def = type(cp.definition) == "table" and cp.definition.name
    if def and cp.value ~= nil then add(def .. ":" .. tostring(cp.value)) end
  end
  table.sort(out)
  return out
end

local function find_collection(ctx, name)
  for c in ctx.target:each("collections", { type = "public", name = name }) do
    if c.name == name and c.type == "public" then return c end
  end
  return nil
end

-- Public collection of that name, created when missing (409: a
-- concurrent item made it first -> it is looked for until listed).
local function collection(ctx, name)
  local r = ctx.ensure {
    find = function() return find_collection(ctx, name) end,
    unique = true,  -- a public collection's name is (a 409, below)
    create = function()
      local ok, created = pcall(ctx.target.post, ctx.target, "collections", {
        name = name, type = "public", description = "Migrated from Qlik Sense Enterprise by qmig-lua" })
      if ok then return created end
      if errors.is(created) and created.status == 409 then
        local c = ctx.listed(function() return find_collection(ctx, name) end)
        if c then return c, "exists" end
      end
      error(created, 0)
    end,
    undo = function(id) return { method = "DELETE", path = "collections/" .. id } end,
  }
  return r.id, r.status == "created"
end

-- The catalogue item of an app (a new app is listed only after a while:
-- ctx.listed looks again).
local function app_item(ctx, app_id)
  -- an app a plan would import has no catalogue item yet, nor tags
  if ctx.is_planned(app_id) then return { id = app_id, resourceId = app_id, collectionIds = {} } end
  return ctx.listed(function()
    for item in ctx.target:each("items", { resourceType = "app", resourceId = app_id }) do
      if item.resourceId == app_id then return item end
    end
    return nil
  end)
end

return {
  name = "tags.migrate",
  object = "app.tags",
  produces = { data = { "tags", "collections" } },
  consumes = { { kind = "app" }, { kind = "app.published" } },
  requires = { "apps.import" },

  items = function(ctx)
    local out = {}
    for _, app in ipairs(scope.list(ctx)) do  -- plan.apps, as apps.export reads it
      local tags = tag_names(app)
      if #tags > 0 then
        -- the Cloud copies are part of the item, so a publish after the
        -- first run makes the item run again for the published copy
        local targets = {}
        for _, kind in ipairs { "app", "app.published" } do
          local id = ctx.lookup(kind, app.id)
          if id then targets[#targets + 1] = id end
        end
        out[#out + 1] = { id = app.id, name = app.name, tags = tags, targets = targets }
      end
    end
    return out
  end,

  -- its item for an app starts once the steps before it are done for that app
  after = "object",
  key = function(x) return x.id end,

  run = function(ctx, x)
    if #x.targets == 0 then
      return { status = "skipped", reason = "app not imported yet (run apps.import first)" }
    end
    local added, collections = 0, {}
    local items = {}
    for _, app_id in ipairs(x.targets) do
      local item = app_item(ctx, app_id)
      if not item then error(errors.new { message = "no catalog item for Cloud app " .. app_id }, 0) end
      items[#items + 1] = item
    end
    for _, tag in ipairs(x.tags) do
      local cid = collection(ctx, tag)
      collections[tag] = cid
      for _, item in ipairs(items) do
        local present = false
        for _, id in ipairs(item.collectionIds or {}) do if id == cid then present = true end end
        if not present then
          local ok, err = pcall(ctx.target.post, ctx.target, "collections/" .. cid .. "/items", { id = item.id })
          if ok then
            ctx.undo { method = "DELETE", path = "collections/" .. cid .. "/items/" .. item.id }
            added = added + 1
          elseif not (errors.is(err) and err.status == 409) then
            error(err, 0)
          end
        end
      end
    end
    return { status = added > 0 and "updated" or "unchanged", target_id = x.targets[#x.targets],
      reason = added > 0 and (added .. " tag(s) added") or nil,
      data = { tags = x.tags, collections = collections } }
  end,
}
