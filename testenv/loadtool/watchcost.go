package main

func watchCost(args []string) error { return nil }
