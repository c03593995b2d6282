"""The console channel: talk to the character from a terminal, as one or more named members.

Lines look like Discord messages: `alice: hi @Susu` speaks as alice (and makes alice the current
speaker); a line without a name speaks as the current speaker; `/as bob` switches. The character
answers messages that mention it (`@Susu`). Every message goes into short-term memory.
"""

from __future__ import annotations

import itertools
import re
import sys
from dataclasses import dataclass
from typing import TextIO

from app.explain import explain
from app.runtime import Runtime
from chains.types import ChatMessage

CONSOLE_CHANNEL_ID = 1100000000000000002  # the sample server's #tavern
HELP = """commands:
  name: text    speak as `name` (and keep speaking as them)
  /as NAME      switch the current speaker
  /explain      toggle the per-stage explanation after each reply
  /clear        forget this channel's short-term memory and summary
  /reload       re-read the persona and prompt files
  /help, /quit"""
_NAMED = re.compile(r"^(?P<name>[\w.\-]{1,32}):(?!//)\s*(?P<text>.*)$", re.S)


@dataclass
class ConsoleLine:
    author: str
    text: str


def parse_line(line: str, current: str) -> ConsoleLine:
    """Split `name: text` into author and text; otherwise the current speaker says the line."""
    match = _NAMED.match(line.strip())
    if match:
        return ConsoleLine(match["name"], match["text"].strip())
    return ConsoleLine(current, line.strip())


def mentions(text: str, character: str) -> bool:
    return re.search(rf"@{re.escape(character)}\b", text, re.I) is not None


class Console:
    """A terminal stand-in for the Discord channel."""

    def __init__(
        self, runtime: Runtime, out: TextIO = sys.stdout, show_explain: bool = False, speaker: str = "you"
    ) -> None:
        self.runtime = runtime
        self.out = out
        self.show_explain = show_explain
        self.speaker = speaker
        self._ids = itertools.count(1)

    def say(self, author: str, text: str, force_reply: bool = False) -> str | None:
        """One message into the channel; returns the character's reply if it answered.

        The reply is printed word by word as it is generated (with STREAM_REPLIES); if the final,
        validated text is not what was printed so far (a retry, the fallback line), it is printed again.
        """
        message = ChatMessage(
            author=author, content=text, author_id=abs(hash(author)) % 10**12, message_id=next(self._ids)
        )
        self.runtime.observe(CONSOLE_CHANNEL_ID, message)
        if not (force_reply or mentions(text, self.runtime.persona.name)):
            return None
        name = self.runtime.persona.name
        if not self.runtime.settings.STREAM_REPLIES:
            result = self.runtime.reply(CONSOLE_CHANNEL_ID, message)
            print(f"{name}: {result.text}", file=self.out, flush=True)
        else:
            printed = None
            for result in self.runtime.stream(CONSOLE_CHANNEL_ID, message):
                if printed is not None and not result.text.startswith(printed):
                    print(file=self.out)  # the reply was rewritten: start over on a new line
                    printed = None
                if printed is None:
                    print(f"{name}: ", end="", file=self.out, flush=True)
                    printed = ""
                print(result.text[len(printed) :], end="", file=self.out, flush=True)
                printed = result.text
            print(file=self.out, flush=True)
        if self.show_explain:
            print(explain(result), file=self.out, flush=True)
        return result.text

    def command(self, line: str) -> bool:
        """Handle a /command; returns False when the console should exit."""
        name, _, arg = line[1:].partition(" ")
        if name in ("quit", "exit"):
            return False
        if name == "as" and arg.strip():
            self.speaker = arg.strip()
            print(f"(speaking as {self.speaker})", file=self.out)
        elif name == "explain":
            self.show_explain = not self.show_explain
            print(f"(explain {'on' if self.show_explain else 'off'})", file=self.out)
        elif name == "clear":
            self.runtime.memory.clear(CONSOLE_CHANNEL_ID)
            print("(short-term memory cleared)", file=self.out)
        elif name == "reload":
            self.runtime.reload_prompts()
            print("(persona and prompts reloaded)", file=self.out)
        else:
            print(HELP, file=self.out)
        return True

    def loop(self, lines: TextIO = sys.stdin) -> None:
        persona = self.runtime.persona
        interactive = lines.isatty()
        print(f"#tavern (console) - {self.runtime.model.describe()}", file=self.out)
        print(f"Mention @{persona.name} to talk to {persona.name}. /help for commands.", file=self.out)
        if persona.greeting:
            print(f"{persona.name}: {persona.render(persona.greeting, self.speaker)}", file=self.out, flush=True)
        while True:
            if interactive:
                print(f"[{self.speaker}]> ", end="", file=self.out, flush=True)
            line = lines.readline()
            if not line:
                break
            if not line.strip():
                continue
            if line.startswith("/"):
                if not self.command(line.strip()):
                    break
                continue
            parsed = parse_line(line, self.speaker)
            self.speaker = parsed.author
            self.say(parsed.author, parsed.text)
