"""The assignment service: assignments, their submissions and the grading of each."""
