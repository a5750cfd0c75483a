-- Why a node's plugin failed to load or was disabled after failures
-- (server/pluginhost), shown by the console next to the node's state.
ALTER TABLE node_plugins ADD COLUMN error TEXT NOT NULL DEFAULT '';
