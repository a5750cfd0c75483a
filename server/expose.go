package server

import "github.com/aviary-im/aviary/plugins"

// PluginHost returns the plugins.Host the node gives its plugins, for
// plugins loaded at run time (server/pluginhost).
func (n *Node) PluginHost() plugins.Host { return &host{n: n} }
