"""Jobs run on a schedule or by hand (reports, compaction, validation, replay) and the
`cityflow` command line that fronts all of it."""
