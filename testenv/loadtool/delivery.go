package main

func delivery(args []string) error { return nil }
