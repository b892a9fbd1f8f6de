"""Wording for the offline teacher: sentence phrasings per operation, and the entities they name.

The engine (`data_gen.offline`) decides *what* a problem computes; this module only says how each
step can be worded. Every phrasing pool is split in two: `train` phrasings are the only ones the
`train` split ever uses, `test` phrasings the only ones the `test` split uses, so a held-out
problem is worded in sentences a model trained on `train` has never read.

A phrasing is ``"text|names"``: `text` is a `str.format` template over the slots below, `names`
(optional, comma-separated, may use slots too) are the variable names the program uses for the
quantities this sentence introduces, so that the code reads like the sentence.

Slots: {P} the protagonist, {Q} the person compared with at the start, {F} a friend who takes
part in a step, {R} the person compared with at the end, {D} a bystander in distractors;
pronouns of {P}: {he} {He} {him} {his} {His}; {items} {item} {Items} {item_var} {cont} {conts}
{thing} {act} {other_items}; numbers {n} {m} {k} {g} {p} {r} {d}; {times} ("twice", ...),
{frac} / {Frac} ("a third", ...), {pct}, {per} / {pers} (a period: "day" / "days").
"""

from __future__ import annotations

# fmt: off
PHRASES: dict[str, dict[str, list[str]]] = {
    # ---------------------------------------------------------------- items: a count of objects
    "items.s.have": {
        "train": ["{P} has {n} {items}.", "{P} owns {n} {items}.", "{P} has a collection of {n} {items}."],
        "test": ["{P} starts the month with {n} {items}.", "There are {n} {items} in {P}'s room."],
    },
    "items.s.groups": {
        "train": ["{P} has {g} {conts} of {items} with {k} {items} in each {cont}.|{conts},per_{cont}",
                  "{P} buys {g} {conts} of {items}. Each {cont} holds {k} {items}.|{conts},per_{cont}"],
        "test": ["{P} is given {g} {conts}, each containing {k} {items}.|{conts},per_{cont}"],
    },
    "items.s.unit": {
        "train": ["{P} has {n} dozen {items}.|dozens", "{P} buys {n} dozen {items}.|dozens"],
        "test": ["{P}'s shelf holds {n} dozen {items}.|dozens"],
    },
    "items.s.compare.times": {
        "train": ["{Q} has {n} {items}. {P} has {times} as many {items} as {Q}."],
        "test": ["{P} owns {times} the number of {items} that {Q} owns, and {Q} owns {n}."],
    },
    "items.s.compare.more": {
        "train": ["{Q} has {n} {items}. {P} has {m} more {items} than {Q}.|difference"],
        "test": ["{Q} keeps {n} {items}, while {P} keeps {m} {items} beyond that amount.|difference"],
    },
    "items.s.compare.fewer": {
        "train": ["{Q} has {n} {items}. {P} has {m} fewer {items} than {Q}.|difference"],
        "test": ["{Q} owns {n} {items}, which is {m} above what {P} owns.|difference"],
    },
    "items.m.add": {
        "train": ["{He} buys {n} more {items}.|bought", "{F} gives {him} {n} {items}.|received",
                  "{He} finds {n} more {items}.|found"],
        "test": ["Later, {he} picks up another {n} {items}.|picked_up",
                 "As a present, {he} receives {n} extra {items}.|present"],
    },
    "items.m.sub": {
        "train": ["{He} gives {n} {items} to {F}.|given", "{He} loses {n} of them.|lost",
                  "{He} sells {n} {items}.|sold"],
        "test": ["{F} borrows {n} {items} and never returns them.|borrowed",
                 "{He} trades away {n} of {his} {items}.|traded"],
    },
    "items.m.mul": {
        "train": ["{He} ends up with {times} as many {items} as before.",
                  "{His} collection grows to {times} its size."],
        "test": ["After a lucky week, {he} owns {times} the {items} {he} had."],
    },
    "items.m.frac": {
        "train": ["{He} gives away {frac} of {his} {items}.|given", "{Frac} of {his} {items} get lost.|lost",
                  "{He} sells {frac} of them.|sold"],
        "test": ["{F} takes {frac} of {P}'s {items} home.|taken"],
    },
    "items.m.pct.down": {
        "train": ["{He} sells {pct}% of {his} {items}.|sold", "{He} gives {pct}% of them to {F}.|given"],
        "test": ["{pct}% of {his} {items} turn out damaged and are thrown out.|damaged"],
    },
    "items.m.pct.up": {
        "train": ["{His} collection of {items} grows by {pct}%.|growth"],
        "test": ["The number of {items} {he} owns rises by {pct}%.|growth"],
    },
    "items.m.rate": {
        "train": ["{He} collects {r} {items} every {per} for {d} {pers}.|per_{per},{pers},collected",
                  "Each {per}, {he} gets {r} new {items}, for {d} {pers}.|per_{per},{pers},new"],
        "test": ["For {d} {pers} in a row, {he} adds {r} {items} per {per}.|per_{per},{pers},added"],
    },
    "items.m.groups.up": {
        "train": ["{He} buys {g} {conts} with {k} {items} in each.|{conts},per_{cont},bought",
                  "{He} gets {g} more {conts} of {items}, with {k} {items} per {cont}.|{conts},per_{cont},new"],
        "test": ["{F} hands {him} {g} {conts} that hold {k} {items} apiece.|{conts},per_{cont},received"],
    },
    "items.m.groups.down": {
        "train": ["{He} packs {g} {conts} with {k} {items} each and gives them away.|{conts},per_{cont},packed"],
        "test": ["{He} mails {g} {conts} to {F}, and every {cont} carries {k} {items}.|{conts},per_{cont},mailed"],
    },
    "items.m.unit": {
        "train": ["{He} buys {n} dozen {items}.|dozens,bought", "{He} gets {n} more dozen {items}.|dozens,new"],
        "test": ["{He} is handed {n} dozen {items} by {F}.|dozens,received"],
    },
    "items.e.ask": {
        "train": ["How many {items} does {P} have now?", "How many {items} does {P} have left?",
                  "How many {items} does {P} end up with?"],
        "test": ["What is the number of {items} {P} has at the end?",
                 "In the end, how many {items} remain with {P}?"],
    },
    "items.e.times": {
        "train": ["{P} sells all of them for ${p} each. How much money does {he} make?|price",
                  "Each {item} is worth ${p}. How many dollars are {P}'s {items} worth?|price"],
        "test": ["If every {item} sells for ${p}, what is the total value of {P}'s {items} in dollars?|price"],
    },
    "items.e.share": {
        "train": ["{P} shares them equally among {k} friends. How many {items} does each friend get?|friends",
                  "{P} puts them into {k} {conts} with the same number in each. How many {items} are in each {cont}?|{conts}"],
        "test": ["If {P} splits {his} {items} evenly into {k} piles, how many {items} go in each pile?|piles"],
    },
    "items.e.compare": {
        "train": ["{R} has {n} {items}. How many more {items} does {P} have than {R}?|{r}_{item_var}",
                  "{R} has {n} {items}. How many fewer {items} does {R} have than {P}?|{r}_{item_var}"],
        "test": ["{R} has {n} {items}. What is the gap between {P}'s count and {R}'s?|{r}_{item_var}"],
    },
    "items.e.goal": {
        "train": ["{P} wants to have {g} {items}. How many more {items} does {he} need?|goal",
                  "{P} needs {g} {items} for a project. How many more {items} must {he} get?|needed"],
        "test": ["To reach a total of {g} {items}, how many more does {P} have to collect?|target"],
    },
    "items.e.together": {
        "train": ["How many {items} do {P} and {Q} have together?", "How many {items} do they have in total?"],
        "test": ["What is the combined number of {items} owned by {P} and {Q}?"],
    },
    # ---------------------------------------------------------------- money: dollars held by {P}
    "money.s.have": {
        "train": ["{P} has ${n}.", "{P} has saved ${n}.", "{P} starts with ${n} in {his} wallet."],
        "test": ["{P} keeps ${n} in a piggy bank.", "There is ${n} in {P}'s savings account."],
    },
    "money.s.groups": {
        "train": ["{P} has {g} envelopes with ${k} in each.|envelopes,per_envelope"],
        "test": ["{P} is given {g} gift cards worth ${k} apiece.|gift_cards,card_value"],
    },
    "money.s.rate": {
        "train": ["{P} earns ${r} per hour and works {d} hours.|hourly_rate,hours",
                  "{P} gets ${r} a {per} for {d} {pers} of allowance.|per_{per},{pers}"],
        "test": ["{P} works for {d} hours at a pay of ${r} an hour.|hourly_rate,hours"],
    },
    "money.s.compare.times": {
        "train": ["{Q} has ${n}. {P} has {times} as much money as {Q}."],
        "test": ["{P} holds {times} the cash that {Q} holds, and {Q} holds ${n}."],
    },
    "money.s.compare.more": {
        "train": ["{Q} has ${n}. {P} has ${m} more than {Q}.|difference"],
        "test": ["{Q} saved ${n}, and {P} saved ${m} beyond that.|difference"],
    },
    "money.s.compare.fewer": {
        "train": ["{Q} has ${n}. {P} has ${m} less than {Q}.|difference"],
        "test": ["{Q} holds ${n}, which is ${m} above what {P} holds.|difference"],
    },
    "money.m.add": {
        "train": ["{He} earns ${n} doing chores.|earned", "{His} aunt gives {him} ${n}.|gift",
                  "{He} sells an old {thing} for ${n}.|sale"],
        "test": ["{He} wins ${n} in a contest.|prize", "{F} pays {him} back ${n}.|repaid"],
    },
    "money.m.sub": {
        "train": ["{He} spends ${n} on a {thing}.|spent", "{He} pays ${n} for a {thing}.|cost",
                  "{He} lends ${n} to {F}.|lent"],
        "test": ["A new {thing} costs {him} ${n}.|price", "{He} donates ${n} to a charity.|donated"],
    },
    "money.m.mul": {
        "train": ["{His} savings grow to {times} the amount.", "{His} grandmother makes {his} money {times} as much."],
        "test": ["A lucky investment leaves {him} with {times} the cash."],
    },
    "money.m.frac": {
        "train": ["{He} spends {frac} of {his} money on a {thing}.|spent", "{He} gives {frac} of {his} money to {F}.|given"],
        "test": ["{Frac} of {his} money goes to paying a bill.|bill"],
    },
    "money.m.pct.down": {
        "train": ["{He} puts {pct}% of {his} money into a savings account.|saved",
                  "{He} spends {pct}% of it on food.|food"],
        "test": ["{He} donates {pct}% of {his} money to charity.|donated"],
    },
    "money.m.pct.up": {
        "train": ["{He} earns {pct}% interest on {his} money.|interest"],
        "test": ["{His} boss adds a {pct}% bonus to that amount.|bonus"],
    },
    "money.m.rate.up": {
        "train": ["{He} earns ${r} a {per} for {d} {pers}.|per_{per},{pers},earned",
                  "{He} works {d} more hours at ${r} per hour.|hourly_rate,hours,earned"],
        "test": ["Over {d} {pers}, {he} makes ${r} each {per}.|per_{per},{pers},made"],
    },
    "money.m.rate.down": {
        "train": ["{He} spends ${r} a {per} on snacks for {d} {pers}.|per_{per},{pers},snacks"],
        "test": ["For {d} {pers}, {he} pays ${r} each {per} for lunch.|per_{per},{pers},lunch"],
    },
    "money.m.groups.up": {
        "train": ["{He} sells {g} {items} for ${k} each.|{item_var},price,earned"],
        "test": ["{He} gets ${k} for each of the {g} {items} {he} sells.|{item_var},price,income"],
    },
    "money.m.groups.down": {
        "train": ["{He} buys {g} {items} that cost ${k} each.|{item_var},price,cost",
                  "{He} pays for {g} {items} at ${k} per {item}.|{item_var},price,cost"],
        "test": ["{He} picks up {g} {items} at ${k} apiece.|{item_var},price,total_cost"],
    },
    "money.e.ask": {
        "train": ["How much money does {P} have now?", "How many dollars does {P} have left?",
                  "How much money does {P} have in the end?"],
        "test": ["What amount of money, in dollars, remains with {P}?"],
    },
    "money.e.share": {
        "train": ["{P} uses all the money to buy {items} that cost ${k} each. How many {items} does {he} buy?|price",
                  "{P} splits the money equally among {k} friends. How much does each friend get?|friends"],
        "test": ["If {items} cost ${k} apiece, how many {items} can {P} buy with all of it?|price"],
    },
    "money.e.compare": {
        "train": ["{R} has ${n}. How much more money does {P} have than {R}?|{r}_money"],
        "test": ["{R} has ${n}. By how many dollars does {P}'s money exceed {R}'s?|{r}_money"],
    },
    "money.e.goal": {
        "train": ["{P} wants to buy a {thing} that costs ${g}. How much more money does {he} need?|price"],
        "test": ["A {thing} costs ${g}. How many more dollars must {P} save to afford it?|price"],
    },
    "money.e.together": {
        "train": ["How much money do {P} and {Q} have together?"],
        "test": ["What is the total amount of money that {P} and {Q} hold?"],
    },
    # ---------------------------------------------------------------- time: minutes {P} spends
    "time.s.have": {
        "train": ["On Monday, {P} spends {n} minutes {act}.", "{P} spends {n} minutes {act} in the morning."],
        "test": ["{P} begins the week with {n} minutes of {act}."],
    },
    "time.s.unit": {
        "train": ["{P} spends {n} hours {act} on Saturday.|hours"],
        "test": ["{P} devotes {n} hours to {act} on Sunday.|hours"],
    },
    "time.s.rate": {
        "train": ["{P} spends {r} minutes {act} every day for {d} days.|minutes_per_day,days"],
        "test": ["Every day for {d} days, {P} does {r} minutes of {act}.|minutes_per_day,days"],
    },
    "time.s.compare.times": {
        "train": ["{Q} spends {n} minutes {act}. {P} spends {times} as long."],
        "test": ["{P} spends {times} as many minutes {act} as {Q}, who spends {n} minutes."],
    },
    "time.s.compare.more": {
        "train": ["{Q} spends {n} minutes {act}. {P} spends {m} minutes more than {Q}.|difference"],
        "test": ["{P} keeps at {act} {m} minutes longer than {Q}, who stops after {n} minutes.|difference"],
    },
    "time.s.compare.fewer": {
        "train": ["{Q} spends {n} minutes {act}. {P} spends {m} fewer minutes than {Q}.|difference"],
        "test": ["{Q} spends {n} minutes {act}, which is {m} minutes above {P}'s time.|difference"],
    },
    "time.m.add": {
        "train": ["Later, {he} spends another {n} minutes {act}.|extra", "On Tuesday, {he} adds {n} more minutes.|tuesday",
                  "{He} spends {n} more minutes {act} after dinner.|after_dinner"],
        "test": ["In the evening, {he} goes on for {n} more minutes.|evening",
                 "On Thursday, another {n} minutes get added to {his} total.|thursday"],
    },
    "time.m.sub": {
        "train": ["{He} wastes {n} of those minutes on {his} phone.|wasted",
                  "{n} of those minutes were spent looking for {his} things.|searching"],
        "test": ["A break takes up {n} of those minutes and does not count.|break_time"],
    },
    "time.m.mul": {
        "train": ["{His} total time then becomes {times} as long."],
        "test": ["After that, the time {he} has logged grows to {times} what it was."],
    },
    "time.m.unit": {
        "train": ["{He} also spends {n} hours {act} on Sunday.|hours,sunday",
                  "On Friday, {he} spends {n} hours {act}.|hours,friday"],
        "test": ["Over the weekend, {he} puts in {n} more hours.|hours,weekend"],
    },
    "time.m.rate": {
        "train": ["{He} then spends {r} minutes a day for {d} more days.|minutes_per_day,days,more_time"],
        "test": ["For another {d} days, {he} puts in {r} minutes daily.|minutes_per_day,days,added"],
    },
    "time.m.frac": {
        "train": ["{He} spends {frac} of that time chatting instead.|chatting",
                  "{Frac} of those minutes are spent warming up, which does not count.|warming_up"],
        "test": ["{Frac} of the time turns out to be breaks.|breaks"],
    },
    "time.m.pct.down": {
        "train": ["{pct}% of that time is wasted.|wasted"],
        "test": ["{He} spends {pct}% of that time resting.|resting"],
    },
    "time.e.ask": {
        "train": ["How many minutes does {P} spend {act} in total?", "How many minutes is that altogether?"],
        "test": ["What is the total time, in minutes, that {P} spends {act}?"],
    },
    "time.e.convert": {
        "train": ["How many hours does {P} spend {act}?"],
        "test": ["Expressed in hours, how long does {P} spend {act}?"],
    },
    "time.e.share": {
        "train": ["{P} splits that time equally over {k} sessions. How many minutes long is each session?|sessions"],
        "test": ["If the time is divided evenly into {k} sessions, how many minutes is each one?|sessions"],
    },
    "time.e.compare": {
        "train": ["{R} spends {n} minutes {act}. How many more minutes does {P} spend than {R}?|{r}_minutes"],
        "test": ["{R} spends {n} minutes {act}. How much longer, in minutes, is {P}'s time?|{r}_minutes"],
    },
    "time.e.goal": {
        "train": ["{P}'s goal is {g} minutes. How many more minutes does {he} need?|goal"],
        "test": ["To reach {g} minutes, how many more minutes must {P} spend {act}?|target"],
    },
    "time.e.together": {
        "train": ["How many minutes do {P} and {Q} spend {act} together?"],
        "test": ["What is the total number of minutes {P} and {Q} spend {act}?"],
    },
    # ---------------------------------------------------------------- distance: miles {P} travels
    "distance.s.have": {
        "train": ["{P} drives {n} miles to work.", "{P} bikes {n} miles in the morning."],
        "test": ["{P} covers {n} miles on the first day of a trip."],
    },
    "distance.s.rate": {
        "train": ["{P} drives at {r} miles per hour for {d} hours.|speed,hours"],
        "test": ["For {d} hours, {P} travels at a speed of {r} miles per hour.|speed,hours"],
    },
    "distance.s.compare.times": {
        "train": ["{Q} drives {n} miles. {P} drives {times} as far."],
        "test": ["{P} travels {times} as far as {Q}, who travels {n} miles."],
    },
    "distance.s.compare.more": {
        "train": ["{Q} drives {n} miles. {P} drives {m} miles more than {Q}.|difference"],
        "test": ["{P} goes {m} miles farther than {Q}, whose trip is {n} miles.|difference"],
    },
    "distance.s.compare.fewer": {
        "train": ["{Q} drives {n} miles. {P} drives {m} fewer miles than {Q}.|difference"],
        "test": ["{Q}'s trip is {n} miles, {m} miles longer than {P}'s.|difference"],
    },
    "distance.m.add": {
        "train": ["Then {he} drives another {n} miles.|extra", "After lunch, {he} drives {n} more miles.|after_lunch",
                  "{He} stops for gas and then drives {n} miles more.|more_miles"],
        "test": ["{He} adds a detour of {n} miles.|detour", "Before dinner, {he} covers a further {n} miles.|further"],
    },
    "distance.m.mul": {
        "train": ["{He} then drives back home the same way, doubling the distance.|x2"],
        "test": ["{He} returns along the same route, so the distance is twice as much.|x2"],
    },
    "distance.m.rate": {
        "train": ["Then {he} drives {d} hours at {r} miles per hour.|speed,hours,highway",
                  "On the highway, {he} goes {r} miles per hour for {d} hours.|speed,hours,highway"],
        "test": ["Next comes a stretch of {d} hours at {r} miles per hour.|speed,hours,stretch"],
    },
    "distance.e.ask": {
        "train": ["How many miles does {P} drive in total?", "How far does {P} go altogether, in miles?"],
        "test": ["What is the total distance {P} travels, in miles?"],
    },
    "distance.e.share": {
        "train": ["{P}'s car uses one gallon of gas for every {k} miles. How many gallons does {he} use?|miles_per_gallon"],
        "test": ["If the car goes {k} miles on each gallon, how many gallons are used?|miles_per_gallon"],
    },
    "distance.e.times": {
        "train": ["{P} is paid ${p} for each mile. How much does {he} earn?|pay_per_mile"],
        "test": ["At ${p} per mile, what does the whole trip cost in dollars?|cost_per_mile"],
    },
    "distance.e.compare": {
        "train": ["{R} drives {n} miles. How many more miles does {P} drive than {R}?|{r}_miles"],
        "test": ["{R} covers {n} miles. How much farther, in miles, does {P} go?|{r}_miles"],
    },
    "distance.e.goal": {
        "train": ["The whole trip is {g} miles. How many miles are left?|trip"],
        "test": ["If the destination is {g} miles away, how much farther must {P} go?|destination"],
    },
    "distance.e.together": {
        "train": ["How many miles do {P} and {Q} drive together?"],
        "test": ["What is the combined distance, in miles, that {P} and {Q} cover?"],
    },
    # ---------------------------------------------------------------- irrelevant sentences (GSM-IC)
    "any.distractor": {
        "train": ["{D} is {n} years old.", "{D} has {n} {other_items}.", "{P}'s school is {n} miles away.",
                  "It is {n} degrees outside.", "{D} reads {n} pages of a book.", "{D} has {n} {items} at home."],
        "test": ["{P}'s dog weighs {n} pounds.", "There are {n} students in {P}'s class.",
                 "{D} collected {n} {other_items} at a fair last spring."],
    },
}
# fmt: on

FEMALE = [
    "Mia", "Emma", "Olivia", "Ava", "Sofia", "Lily", "Chloe", "Grace", "Zoe", "Nora", "Ruby",
    "Hannah", "Aisha", "Priya", "Mei", "Lucia", "Fatima", "Elena", "Maya", "Sara", "Julia",
    "Anna", "Leah", "Rosa", "Yuki", "Amara", "Ingrid", "Keiko", "Nadia", "Tara",
]  # fmt: skip
MALE = [
    "Leo", "Liam", "Noah", "Ethan", "Lucas", "Omar", "Ravi", "Kenji", "Diego", "Sam", "Max",
    "Ben", "Jack", "Owen", "Hugo", "Felix", "Ivan", "Marco", "Tariq", "Arjun", "Pablo",
    "Theo", "Jonah", "Kofi", "Mateo", "Henry", "Oscar", "Wei", "Luis", "Adam",
]  # fmt: skip
PRONOUNS = {
    "f": {"he": "she", "He": "She", "him": "her", "his": "her", "His": "Her"},
    "m": {"he": "he", "He": "He", "him": "him", "his": "his", "His": "His"},
}
# (plural, singular); the plural's snake_case form is the program's variable name.
ITEMS = [
    ("marbles", "marble"), ("stickers", "sticker"), ("pencils", "pencil"), ("cookies", "cookie"),
    ("apples", "apple"), ("books", "book"), ("seashells", "seashell"), ("cards", "card"),
    ("stamps", "stamp"), ("crayons", "crayon"), ("beads", "bead"), ("balloons", "balloon"),
    ("toy cars", "toy car"), ("cupcakes", "cupcake"), ("oranges", "orange"), ("candles", "candle"),
    ("comic books", "comic book"), ("postcards", "postcard"), ("buttons", "button"),
    ("erasers", "eraser"), ("muffins", "muffin"), ("lemons", "lemon"), ("coins", "coin"),
    ("shirts", "shirt"), ("notebooks", "notebook"), ("roses", "rose"), ("tulips", "tulip"),
    ("puzzles", "puzzle"), ("rocks", "rock"), ("feathers", "feather"),
]  # fmt: skip
CONTAINERS = [
    ("boxes", "box"), ("bags", "bag"), ("packs", "pack"), ("jars", "jar"), ("crates", "crate"),
    ("baskets", "basket"), ("cartons", "carton"), ("trays", "tray"),
]  # fmt: skip
THINGS = [
    "bike", "book", "jacket", "video game", "lamp", "backpack", "watch", "hat", "scarf",
    "board game", "pair of shoes", "kite", "skateboard", "guitar", "phone case",
]  # fmt: skip
ACTIVITIES = [
    "reading", "practicing the piano", "swimming", "painting", "studying", "jogging", "knitting",
    "gardening", "drawing", "playing chess", "writing stories", "baking",
]  # fmt: skip
PERIODS = [("day", "days"), ("week", "weeks")]
TIMES = {2: "twice", 3: "three times", 4: "four times", 5: "five times"}
FRACTIONS = {
    (1, 2): "half", (1, 3): "a third", (1, 4): "a quarter", (2, 3): "two thirds",
    (3, 4): "three quarters", (1, 5): "a fifth", (2, 5): "two fifths",
}  # fmt: skip
PERCENTS = [10, 20, 25, 30, 40, 50, 60, 75]
