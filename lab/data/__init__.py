"""Conversation datasets, from a source to the prepare stage's splits: the formats the lab reads and their
validation into one row schema, the feedback loop's chat logs, quality filters, mixing, dedup and the leak check,
the answer format, and the offline builtin dataset (data.builtin).

Imports: lab.core."""
