"""Write the sample instruction datasets shipped with lorascope (deterministic: run it, get the same files).

    python trainer/data/make_sample_data.py

Content is real and checkable: capitals, word translations, opposites,
arithmetic with correct answers, comparisons, parity and simple syllogisms. Every
English item has a Russian twin asking the same thing, so a run "with Russian
duplicates" and one "without" differ only in that. Each item is written in the
three formats (plain text, alpaca instruction/input/output, chat messages) so a
run on plain data and one on instruction data see the same facts.

Files (`sample_en_ru.*` has both languages interleaved pairwise; `sample_en.*` only English):
    sample_{en,en_ru}.txt            plain text, examples separated by a blank line
    sample_{en,en_ru}.text.jsonl     plain text, {"text": ...} per line
    sample_{en,en_ru}.alpaca.jsonl   {"instruction", "input", "output"}
    sample_{en,en_ru}.chat.jsonl     {"messages": [{"role": "user"...}, {"role": "assistant"...}]}
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HERE = Path(__file__).parent

# (country EN, capital EN, country RU, capital RU)
CAPITALS = [
    ("France", "Paris", "Франция", "Париж"), ("Germany", "Berlin", "Германия", "Берлин"),
    ("Italy", "Rome", "Италия", "Рим"), ("Spain", "Madrid", "Испания", "Мадрид"),
    ("Portugal", "Lisbon", "Португалия", "Лиссабон"), ("Poland", "Warsaw", "Польша", "Варшава"),
    ("Austria", "Vienna", "Австрия", "Вена"), ("Norway", "Oslo", "Норвегия", "Осло"),
    ("Sweden", "Stockholm", "Швеция", "Стокгольм"), ("Finland", "Helsinki", "Финляндия", "Хельсинки"),
    ("Denmark", "Copenhagen", "Дания", "Копенгаген"), ("Greece", "Athens", "Греция", "Афины"),
    ("Japan", "Tokyo", "Япония", "Токио"), ("China", "Beijing", "Китай", "Пекин"),
    ("India", "New Delhi", "Индия", "Нью-Дели"), ("Egypt", "Cairo", "Египет", "Каир"),
    ("Canada", "Ottawa", "Канада", "Оттава"), ("Mexico", "Mexico City", "Мексика", "Мехико"),
    ("Brazil", "Brasília", "Бразилия", "Бразилиа"), ("Argentina", "Buenos Aires", "Аргентина", "Буэнос-Айрес"),
    ("Australia", "Canberra", "Австралия", "Канберра"), ("Russia", "Moscow", "Россия", "Москва"),
    ("Turkey", "Ankara", "Турция", "Анкара"), ("Ireland", "Dublin", "Ирландия", "Дублин"),
    ("Hungary", "Budapest", "Венгрия", "Будапешт"), ("Czechia", "Prague", "Чехия", "Прага"),
    ("Kenya", "Nairobi", "Кения", "Найроби"), ("Peru", "Lima", "Перу", "Лима"),
]

# (English word, Russian word)
WORDS = [
    ("cat", "кошка"), ("dog", "собака"), ("house", "дом"), ("water", "вода"), ("sun", "солнце"),
    ("moon", "луна"), ("book", "книга"), ("tree", "дерево"), ("city", "город"), ("river", "река"),
    ("bread", "хлеб"), ("milk", "молоко"), ("window", "окно"), ("door", "дверь"), ("friend", "друг"),
    ("school", "школа"), ("apple", "яблоко"), ("table", "стол"), ("winter", "зима"), ("summer", "лето"),
    ("bird", "птица"), ("road", "дорога"), ("snow", "снег"), ("fire", "огонь"),
]

# (EN word, EN opposite, RU word, RU opposite)
OPPOSITES = [
    ("hot", "cold", "горячий", "холодный"), ("big", "small", "большой", "маленький"),
    ("fast", "slow", "быстрый", "медленный"), ("old", "new", "старый", "новый"),
    ("light", "dark", "светлый", "тёмный"), ("high", "low", "высокий", "низкий"),
    ("open", "closed", "открытый", "закрытый"), ("happy", "sad", "весёлый", "грустный"),
    ("long", "short", "длинный", "короткий"), ("strong", "weak", "сильный", "слабый"),
    ("early", "late", "ранний", "поздний"), ("full", "empty", "полный", "пустой"),
    ("rich", "poor", "богатый", "бедный"), ("wet", "dry", "мокрый", "сухой"),
]

# (name EN, category EN plural, superset EN plural, name RU, category RU plural, superset RU plural)
SYLLOGISMS = [
    ("Tom", "cats", "animals", "Том", "кошки", "животные"),
    ("Rex", "dogs", "mammals", "Рекс", "собаки", "млекопитающие"),
    ("Oak", "oaks", "trees", "Дуб", "дубы", "деревья"),
    ("Mars", "planets", "celestial bodies", "Марс", "планеты", "небесные тела"),
    ("Anna", "doctors", "people", "Анна", "врачи", "люди"),
    ("Iron", "metals", "elements", "Железо", "металлы", "элементы"),
    ("Paris", "capitals", "cities", "Париж", "столицы", "города"),
    ("Rose", "roses", "flowers", "Роза", "розы", "цветы"),
]


def english_and_russian_items(rng: random.Random) -> list[tuple[dict, dict]]:
    """Pairs of (English item, Russian twin); an item is {"instruction", "input", "output", "topic"}."""
    pairs: list[tuple[dict, dict]] = []

    def add(topic, en_instr, en_out, ru_instr, ru_out, en_in="", ru_in=""):
        pairs.append((
            {"instruction": en_instr, "input": en_in, "output": en_out, "topic": topic, "lang": "en"},
            {"instruction": ru_instr, "input": ru_in, "output": ru_out, "topic": topic, "lang": "ru"},
        ))

    for country, capital, country_ru, capital_ru in CAPITALS:
        add("capital", f"What is the capital of {country}?", f"The capital of {country} is {capital}.",
            f"Назови столицу страны: {country_ru}.", f"Столица страны {country_ru} — {capital_ru}.")
    for en, ru in WORDS:
        add("translate", "Translate the word into Russian.", f"«{ru}»",
            "Переведи слово на английский язык.", f'"{en}"', en_in=en, ru_in=ru)
    for en, en_opp, ru, ru_opp in OPPOSITES:
        add("opposite", f'What is the opposite of "{en}"?', f'The opposite of "{en}" is "{en_opp}".',
            f"Какое слово противоположно по смыслу слову «{ru}»?", f"Противоположное слово — «{ru_opp}».")
    for _ in range(60):
        a, b = rng.randint(2, 99), rng.randint(2, 99)
        op = rng.choice("+-*")
        if op == "*":
            a, b = rng.randint(2, 19), rng.randint(2, 12)
        if op == "-" and b > a:
            a, b = b, a
        value = a + b if op == "+" else a - b if op == "-" else a * b
        sym = "×" if op == "*" else op
        add("arithmetic", f"What is {a} {sym} {b}?", f"{a} {sym} {b} = {value}.",
            f"Сколько будет {a} {sym} {b}?", f"{a} {sym} {b} = {value}.")
    for _ in range(30):
        a, b = rng.sample(range(1, 200), 2)
        big, small = max(a, b), min(a, b)
        add("compare", f"Which number is larger: {a} or {b}?", f"{big} is larger than {small}.",
            f"Какое число больше: {a} или {b}?", f"Число {big} больше, чем {small}.")
    for _ in range(30):
        n = rng.randint(1, 999)
        even = n % 2 == 0
        add("parity", f"Is {n} even or odd?", f"{n} is {'even' if even else 'odd'}.",
            f"Число {n} чётное или нечётное?", f"Число {n} {'чётное' if even else 'нечётное'}.")
    for name, cat, sup, name_ru, cat_ru, sup_ru in SYLLOGISMS:
        add("logic", f"All {cat} are {sup}. {name} is one of the {cat}. Is {name} one of the {sup}?",
            f"Yes. {name} is one of the {cat}, and all {cat} are {sup}, so {name} is one of the {sup}.",
            f"Все {cat_ru} — {sup_ru}. {name_ru} относится к ним ({cat_ru}). Относится ли {name_ru} к группе «{sup_ru}»?",
            f"Да. Все {cat_ru} — {sup_ru}, значит, {name_ru} относится к группе «{sup_ru}».")
        add("logic", f"No {cat} are fish. {name} is one of the {cat}. Is {name} a fish?",
            f"No. No {cat} are fish, and {name} is one of the {cat}, so {name} is not a fish.",
            f"Никакие {cat_ru} не рыбы. {name_ru} относится к ним ({cat_ru}). Рыба ли {name_ru}?",
            f"Нет. Никакие {cat_ru} не рыбы, значит, {name_ru} — не рыба.")
    rng.shuffle(pairs)
    return pairs


def prompt_text(item: dict) -> str:
    return f"{item['instruction']}\n{item['input']}" if item["input"] else item["instruction"]


def plain_text(item: dict) -> str:
    """The plain-format rendering of an item: no chat template, loss on every token."""
    return f"Question: {prompt_text(item)}\nAnswer: {item['output']}"


def write_variant(name: str, items: list[dict]) -> None:
    (HERE / f"{name}.txt").write_text("\n\n".join(plain_text(i) for i in items) + "\n", encoding="utf-8")
    _jsonl(HERE / f"{name}.text.jsonl", [{"text": plain_text(i)} for i in items])
    _jsonl(HERE / f"{name}.alpaca.jsonl",
           [{"instruction": i["instruction"], "input": i["input"], "output": i["output"]} for i in items])
    _jsonl(HERE / f"{name}.chat.jsonl", [
        {"messages": [{"role": "user", "content": prompt_text(i)}, {"role": "assistant", "content": i["output"]}]}
        for i in items
    ])


def _jsonl(path: Path, rows: list[dict]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    pairs = english_and_russian_items(random.Random(20241125))
    write_variant("sample_en_ru", [item for pair in pairs for item in pair])
    write_variant("sample_en", [en for en, _ in pairs])
    print(f"{len(pairs)} English items, {2 * len(pairs)} with Russian twins, written to {HERE}")


if __name__ == "__main__":
    main()
