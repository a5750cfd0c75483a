package pep

// Idle waits until the plugin's background work (caps queries, last-item
// sends) is done, so a test can check that nothing more was sent
// without Stop canceling what was still under way.
func Idle(p *Plugin) { p.wg.Wait() }
