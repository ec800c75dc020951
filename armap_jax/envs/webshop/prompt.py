"""The ReAct instruction and one-shot example for WebShop policies.

`INSTRUCTION` is the system text (what the env is, which actions exist) and
`EXAMPLE` one episode in the turn format of `armap_jax.agent.prompts.
ReActFormat` ("Task:", "Observation:", "Thought:", "Action:"). The example was
produced by running `WebShopEnv` on the SYNTHETIC catalog (seed 0, task "416");
long pages are shortened with "..." lines. `tests/test_webshop_prompt.py`
replays it so the example cannot drift from what the env really prints.
"""

INSTRUCTION = """\
You are shopping on a web store (WebShop) to buy the product that best matches \
a customer's instruction.
Each observation is the current web page as text. Clickable things are shown \
in brackets: buttons such as [Back to Search], [Next >], [< Prev], \
[Description], [Features], [Reviews] and [Buy Now], product ids such as \
[B078GWRC1J], and option values such as [x-large].
Actions (exactly one per turn):
  search[keywords]  - search the store; only on the page with [Search].
  click[value]      - click a bracketed value shown on the current page, e.g. \
click[Next >], click[B078GWRC1J], click[x-large], click[Buy Now].
Choose a product that has the requested attributes and is cheaper than the \
price limit, select every option the instruction asks for (one click per \
option), then click[Buy Now]; buying ends the episode and you are scored on \
how well the product, its options and its price match the instruction. \
An invalid action is answered with "Invalid action: ..." and wastes a turn."""

EXAMPLE = """\
Task: i want to buy machine wash and regular fit men's t-shirt with color: \
white, and size: x-large, and price lower than 60.00 dollars
Observation: WebShop
Instruction:
i want to buy machine wash and regular fit men's t-shirt with color: white, \
and size: x-large, and price lower than 60.00 dollars
[Search]
Thought: I should search for a men's t-shirt that is machine wash and regular fit.
Action: search[men's t-shirt machine wash regular fit]
Observation: [Back to Search]
Page 1 (Total results: 50)
[Next >]
[SY00000110]
Kestrel Everyday Men's Crew Neck T-shirt - Machine Wash, Moisture Wicking
$26.81
[SY00000785]
Harbor Signature Men's Crew Neck T-shirt - Machine Wash, Moisture Wicking
$25.84
...
Thought: SY00000110 is a machine wash men's t-shirt for $26.81, under $60. I will open it.
Action: click[SY00000110]
Observation: [Back to Search]
[< Prev]
color: [heather grey] [olive green] [white]
size: [large] [medium] [small] [x-large]
Kestrel Everyday Men's Crew Neck T-shirt - Machine Wash, Moisture Wicking
Price: $26.81
Rating: 5.0
[Description]
[Features]
[Reviews]
[Buy Now]
Thought: The title does not say regular fit. I will check the features.
Action: click[Features]
Observation: [Back to Search]
[< Prev]
Machine wash: designed for everyday use.
Moisture wicking: designed for everyday use.
Regular fit: designed for everyday use.
Backed by Kestrel's satisfaction guarantee.
Thought: It is machine wash and regular fit. I go back to choose white and x-large.
Action: click[< Prev]
Observation: [Back to Search]
[< Prev]
color: [heather grey] [olive green] [white]
...
Thought: I select the color white.
Action: click[white]
Observation: You have clicked white.
[Back to Search]
...
Thought: Now the size x-large.
Action: click[x-large]
Observation: You have clicked white.
You have clicked x-large.
[Back to Search]
...
Thought: Color and size are selected and the price is under the limit. I buy it.
Action: click[Buy Now]
Observation: Thank you for shopping with us!
Purchased
asin: SY00000110
options: color: white, size: x-large
Your score (min 0.0, max 1.0)
1.0000"""

# Where the example comes from (used by the test that replays it).
EXAMPLE_SOURCE = {"catalog": "synthetic", "seed": 0, "task_id": "416"}
