"""The chat CLI (tools/chat.py): the models it talks to, streamed answers, the session and its feedback log.

Imports: lab.core, lab.data, lab.model, lab.eval."""
