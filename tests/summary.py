"""Lines that tests want shown in pytest's terminal summary (kills tried, inputs tried...), even
when output capturing hides their prints; tests/conftest.py prints them at the end of the run."""
LINES: list[str] = []


def report(line: str) -> None:
    print(line)
    LINES.append(line)
