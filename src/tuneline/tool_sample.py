"""A tool-calling sample dataset (``tuneline sample --task tools``): what a function-calling fine-tune trains on.

Records are in OpenAI's fine-tuning format (``tools`` beside ``messages``; the assistant turn carries
``tool_calls``), each offering one to three functions of a small catalogue in shuffled order. The request needs
one of them (BFCL's "simple" and "multiple"), the same one twice (its "parallel"), or none at all: then the
answer is text and no call belongs ("irrelevance"). Arguments are the values the request names, typed as the
schema says, optional ones given only when the request mentions them. Everything is generated from a seed.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneline.io.atomic import write_text_atomic

CITIES = ["Paris", "Lagos", "Osaka", "Lima", "Oslo", "Austin", "Cairo", "Hanoi", "Dublin", "Quito", "Perth", "Porto"]
WORDS = ["lamp", "chair", "kettle", "scarf", "helmet", "teapot", "candle", "clock", "mug", "backpack", "notebook"]
PEOPLE = ["Alice", "Bob", "Chen", "Dana", "Emeka", "Farah", "Ivan", "Julia", "Kofi", "Nora", "Omar", "Priya"]
CURRENCIES = ["USD", "EUR", "JPY", "GBP", "INR", "BRL"]
LANGUAGES = ["French", "Spanish", "German", "Japanese", "Swahili"]
Args = dict[str, Any]


@dataclass(frozen=True)
class Function:
    """A catalogue entry: its tool schema, and a generator of (request, arguments) in the user's words."""

    name: str
    description: str
    params: dict[str, tuple[str, str]]  # name -> (JSON-schema type, description)
    required: tuple[str, ...]
    ask: Callable[[random.Random], tuple[str, Args]]

    def tool(self) -> dict[str, Any]:
        properties = {p: {"type": t, "description": d} for p, (t, d) in self.params.items()}
        parameters = {"type": "object", "properties": properties, "required": list(self.required)}
        return {"type": "function", "function": {"name": self.name, "description": self.description, "parameters": parameters}}  # fmt: skip


def _weather(r: random.Random) -> tuple[str, Args]:
    city = r.choice(CITIES)
    if r.random() < 0.4:
        unit = r.choice(["celsius", "fahrenheit"])
        return f"What's the weather in {city} right now, in {unit}?", {"city": city, "unit": unit}
    return r.choice([f"How is the weather in {city}?", f"Weather forecast for {city}, please."]), {"city": city}


def _order(r: random.Random) -> tuple[str, Args]:
    item, qty = r.choice(WORDS), r.randint(1, 12)
    if r.random() < 0.3:
        return f"Order {qty} {item} with express shipping.", {"item": item, "quantity": qty, "express": True}
    return r.choice([f"Please order {qty} {item} for me.", f"I need {qty} x {item}."]), {"item": item, "quantity": qty}


def _convert(r: random.Random) -> tuple[str, Args]:
    amount, (a, b) = r.choice([12.5, 40, 99.99, 250, 1000, 7.25]), r.sample(CURRENCIES, 2)
    return f"Convert {amount} {a} to {b}.", {"amount": amount, "from_currency": a, "to_currency": b}


def _circle(r: random.Random) -> tuple[str, Args]:
    radius = r.choice([2, 3, 4.5, 7, 10, 12.5])
    return f"Calculate the area of a circle with a radius of {radius}.", {"radius": radius}


def _triangle(r: random.Random) -> tuple[str, Args]:
    base, height = r.randint(2, 30), r.randint(2, 30)
    return f"Find the area of a triangle with base {base} and height {height}.", {"base": base, "height": height}


def _interest(r: random.Random) -> tuple[str, Args]:
    principal, rate, years = r.choice([500, 1000, 2500, 10000]), r.choice([0.02, 0.035, 0.05, 0.07]), r.randint(1, 30)
    text = f"What will {principal} dollars grow to at an annual rate of {rate} over {years} years, compounded yearly?"
    return text, {"principal": principal, "rate": rate, "years": years}


def _email(r: random.Random) -> tuple[str, Args]:
    who, word = r.choice(PEOPLE), r.choice(WORDS)
    return f"Send an email to {who} with the subject '{word} delivery'.", {"to": who, "subject": f"{word} delivery"}


def _reminder(r: random.Random) -> tuple[str, Args]:
    minutes, word = r.choice([5, 10, 15, 30, 45, 60, 90]), r.choice(WORDS)
    return f"Remind me in {minutes} minutes to pack the {word}.", {"text": f"pack the {word}", "minutes": minutes}


def _translate(r: random.Random) -> tuple[str, Args]:
    word, language = r.choice(WORDS), r.choice(LANGUAGES)
    return f"Translate '{word}' into {language}.", {"text": word, "target_language": language}


def _flights(r: random.Random) -> tuple[str, Args]:
    (a, b), day = r.sample(CITIES, 2), f"2026-0{r.randint(1, 9)}-{r.randint(10, 28)}"
    return f"Find flights from {a} to {b} on {day}.", {"origin": a, "destination": b, "date": day}


def _population(r: random.Random) -> tuple[str, Args]:
    country, year = r.choice(["Japan", "Peru", "Nigeria", "Norway", "Egypt", "Vietnam"]), r.randint(1990, 2024)
    return f"What was the population of {country} in {year}?", {"country": country, "year": year}


def _bmi(r: random.Random) -> tuple[str, Args]:
    weight, height = r.choice([55, 62.5, 70, 81, 95]), r.choice([1.6, 1.68, 1.75, 1.82, 1.9])
    return f"Compute the BMI for someone weighing {weight} kg who is {height} m tall.", {"weight_kg": weight, "height_m": height}  # fmt: skip


CATALOGUE = [
    Function(
        "get_weather",
        "Current weather for a city.",
        {"city": ("string", "City name."), "unit": ("string", "celsius or fahrenheit.")},
        ("city",),
        _weather,
    ),  # fmt: skip
    Function(
        "create_order",
        "Order an item.",
        {
            "item": ("string", "What to order."),
            "quantity": ("integer", "How many."),
            "express": ("boolean", "Express shipping."),
        },
        ("item", "quantity"),
        _order,
    ),  # fmt: skip
    Function(
        "convert_currency",
        "Convert an amount between currencies.",
        {
            "amount": ("number", "Amount."),
            "from_currency": ("string", "ISO code to convert from."),
            "to_currency": ("string", "ISO code to convert to."),
        },
        ("amount", "from_currency", "to_currency"),
        _convert,
    ),  # fmt: skip
    Function(
        "calculate_circle_area", "Area of a circle.", {"radius": ("number", "The radius.")}, ("radius",), _circle
    ),  # fmt: skip
    Function(
        "calculate_triangle_area",
        "Area of a triangle.",
        {"base": ("integer", "The base."), "height": ("integer", "The height.")},
        ("base", "height"),
        _triangle,
    ),  # fmt: skip
    Function(
        "compound_interest",
        "Value of an investment with yearly compounding.",
        {
            "principal": ("number", "Initial amount."),
            "rate": ("number", "Annual rate as a fraction."),
            "years": ("integer", "Years."),
        },
        ("principal", "rate", "years"),
        _interest,
    ),  # fmt: skip
    Function(
        "send_email",
        "Send an email.",
        {"to": ("string", "Recipient."), "subject": ("string", "Subject line.")},
        ("to", "subject"),
        _email,
    ),  # fmt: skip
    Function(
        "set_reminder",
        "Set a reminder.",
        {"text": ("string", "What to remind of."), "minutes": ("integer", "Minutes from now.")},
        ("text", "minutes"),
        _reminder,
    ),  # fmt: skip
    Function(
        "translate_text",
        "Translate text.",
        {"text": ("string", "Text to translate."), "target_language": ("string", "Language to translate into.")},
        ("text", "target_language"),
        _translate,
    ),  # fmt: skip
    Function(
        "find_flights",
        "Search flights.",
        {
            "origin": ("string", "Departure city."),
            "destination": ("string", "Arrival city."),
            "date": ("string", "Date, YYYY-MM-DD."),
        },
        ("origin", "destination", "date"),
        _flights,
    ),  # fmt: skip
    Function(
        "get_population",
        "Population of a country in a year.",
        {"country": ("string", "Country."), "year": ("integer", "Year.")},
        ("country", "year"),
        _population,
    ),  # fmt: skip
    Function(
        "calculate_bmi",
        "Body mass index.",
        {"weight_kg": ("number", "Weight in kg."), "height_m": ("number", "Height in m.")},
        ("weight_kg", "height_m"),
        _bmi,
    ),  # fmt: skip
]
SMALL_TALK = [
    ("Tell me a joke about cats.", "Why did the cat sit on the computer? To keep an eye on the mouse."),
    ("What is the capital of Italy?", "The capital of Italy is Rome."),
    ("Who wrote Hamlet?", "William Shakespeare wrote Hamlet."),
    ("Thanks, that is all for today.", "You're welcome! Have a great day."),
    ("How many legs does a spider have?", "A spider has eight legs."),
    ("Write a haiku about rain.", "Soft rain on the roof,\nthe garden drinks in silence,\nclouds drift far away."),
    ("What does HTML stand for?", "HTML stands for HyperText Markup Language."),
    ("Give me a synonym for happy.", "A synonym for happy is joyful."),
]
SYSTEM = "You are a helpful assistant. Call a function when one fits the request; otherwise answer directly."


def tool_record(rng: random.Random, i: int) -> dict[str, Any]:
    """One record offering 1-3 tools: 60% one call, 15% two calls of the same function, 25% no call (small talk, unrelated tools)."""
    kind = rng.random()
    offered = rng.sample(CATALOGUE, rng.choice((1, 1, 2, 2, 3)))
    messages: list[dict[str, Any]] = [{"role": "system", "content": SYSTEM}] if i % 2 else []
    if kind < 0.25:
        question, answer = rng.choice(SMALL_TALK)
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
        return {"messages": messages, "tools": [f.tool() for f in offered]}
    fn = rng.choice(offered)
    first_text, first = fn.ask(rng)
    asks = [(first_text, first)]
    if kind < 0.4:
        asks.append(next(a for a in iter(lambda: fn.ask(rng), None) if a[1] != first))
    request = asks[0][0] if len(asks) == 1 else f"{asks[0][0]} Also: {asks[1][0][0].lower()}{asks[1][0][1:]}"
    calls = [
        {"id": f"call_{i}_{n}", "type": "function", "function": {"name": fn.name, "arguments": json.dumps(args)}}
        for n, (_, args) in enumerate(asks)
    ]
    messages += [{"role": "user", "content": request}, {"role": "assistant", "content": "", "tool_calls": calls}]
    return {"messages": messages, "tools": [f.tool() for f in offered]}


def write_tool_sample(out: str | Path, n: int = 600, seed: int = 0) -> list[Path]:
    """``n`` tool-calling records as one OpenAI fine-tuning JSONL file under ``out``."""
    rng = random.Random(seed)
    path = Path(out) / "tools_openai.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, "".join(json.dumps(tool_record(rng, i)) + "\n" for i in range(n)))
    return [path]
