package event

// TimeLayout is Mistral's API timestamp format (created_at, updated_at):
// UTC without a zone, whole seconds, a space between date and time. Every
// package that reads or writes Mistral timestamps uses this one.
const TimeLayout = "2006-01-02 15:04:05"
