package modelquant

// WriteChecked is Write with the check substituted, so that a test can make a copy fail it.
var WriteChecked = write
