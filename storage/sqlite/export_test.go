package sqlite

// TxUnprepared is how many statements ran unprepared in write
// transactions (missing from writeTxQueries).
func (s *Store) TxUnprepared() int64 { return s.txUnprepared.Load() }
