-- Argo CD health check for scoring.creditmodel.io/CreditModel (docs/gitops.md shows where it goes).
-- It reads the kstatus conditions the operator writes: Stalled (-> Degraded), Reconciling
-- (-> Progressing, or Suspended while a rollout is paused), Ready (-> Healthy), and waits until
-- status.observedGeneration has caught up with metadata.generation. Lua 5.1 (Argo CD's gopher-lua).
local hs = { status = "Progressing", message = "Waiting for the creditmodel operator to report status" }

if obj.status == nil or obj.status.conditions == nil then
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.message = "Waiting for the creditmodel operator to observe generation " .. tostring(generation)
  return hs
end

local found = {}
for _, condition in ipairs(obj.status.conditions) do
  found[condition.type] = condition
end

local function describe(condition)
  return (condition.reason or "") .. ": " .. (condition.message or "")
end

local stalled = found["Stalled"]
local degraded = found["Degraded"]
if stalled ~= nil and stalled.status == "True" then
  return { status = "Degraded", message = describe(stalled) }
end
if stalled == nil and degraded ~= nil and degraded.status == "True" then
  -- an operator older than the kstatus conditions
  return { status = "Degraded", message = describe(degraded) }
end

local reconciling = found["Reconciling"] or found["Progressing"]
if reconciling ~= nil and reconciling.status == "True" then
  if reconciling.reason == "Paused" then
    return { status = "Suspended", message = describe(reconciling) }
  end
  return { status = "Progressing", message = describe(reconciling) }
end

local ready = found["Ready"]
if ready ~= nil and ready.status == "True" then
  return { status = "Healthy", message = describe(ready) }
end
if ready ~= nil then
  hs.message = describe(ready)
end
return hs
