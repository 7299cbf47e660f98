package pulse

// BudgetUsed returns the message bytes the connections of srv hold now,
// counted in its shared budget.
func BudgetUsed(srv *Server) int64 { return srv.opts.sess.Budget.Used() }

// BudgetRefused returns how many messages srv refused for want of room in
// its shared budget.
func BudgetRefused(srv *Server) int64 { return srv.opts.sess.Budget.Refused() }
