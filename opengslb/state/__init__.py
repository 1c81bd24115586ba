"""Runtime state: the deterministic state machine and its local and Raft-replicated stores."""
