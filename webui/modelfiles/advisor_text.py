"""The quant advisor's built-in text: about 1,700 tokens of plain English prose on
varied subjects (a walk, a craft, some history, some science, a letter, a recipe).

Written for Hearth and dedicated to the public domain (CC0). New prose rather than a
classic: a book every model has read many times scores a perplexity that says more
about memory than about the quantization. A Python constant, so every install (a
wheel too) carries it with the code.
"""

ADVISOR_TEXT = """\
The path to the lighthouse begins behind the bakery, where the road gives up and turns into sand. In the morning the \
sand is cold and packed hard by the night's rain, and a walker can go quickly, leaving sharp prints that the wind \
will soften before noon. Gulls stand along the edge of the water facing the same way, like passengers waiting for a \
train that is late. Beyond them the sea is grey near the shore and green further out, and on clear days a line of \
darker blue marks the place where the bottom falls away and the fishing boats go.

The lighthouse itself is smaller than people expect. It was built in 1871 from stone quarried on the headland, and \
its walls are nearly two metres thick at the base. Eighty-four steps lead to the lamp room. The old keepers counted \
them every night, not because they forgot the number but because counting kept their minds steady in a storm. The \
last keeper left in 1964, when the light was made automatic, and since then a man from the harbour board has \
climbed the steps once a month to clean the glass, check the batteries and write a single line in a book that \
nobody else reads.

Most of what we know about the keepers comes from that book and from the letters they sent home. They wrote about \
the weather, of course, and about the price of oil and the difficulty of getting fresh vegetables. But they also \
wrote about small things that surprised them: a seal that slept on the landing for three days, a ship whose crew \
waved a tablecloth as it passed, the strange silence after a gale, when even the birds seemed unwilling to speak \
first. One keeper, a carpenter by trade, filled the margins with drawings of boats, each one labelled with the \
date and the direction of the wind.

Making a good chair is harder than it looks, and the reason is mostly geometry. A chair stands on four legs, but the \
floor it stands on is never perfectly flat, so the maker has to decide which three legs will carry the weight and \
how the fourth will find its place. The joints must be tight enough to hold for decades yet not so tight that the \
wood splits when the seasons change. Oak swells in damp weather and shrinks in dry weather, and a careful maker \
cuts the pieces so that the movement runs across the joint rather than along it. None of this is written on the \
finished chair. You only notice it years later, when the chair still does not wobble.

Apprentices in the old workshops spent their first year sharpening tools and sweeping the floor. This seemed unfair \
to many of them, but the masters had a reason. A sharp chisel cuts cleanly and safely; a dull one slips, tears the \
grain and sometimes the hand that holds it. By the time an apprentice was trusted with a real piece of furniture, \
he could hear from the sound of the blade whether the edge was right, and he had watched a hundred small mistakes \
being corrected by people who had made them all before.

In the spring of 1853 the town council voted to build a covered market. The decision took eleven meetings and \
produced a pamphlet war that lasted most of the summer. One side argued that the market would bring traders from \
the surrounding villages and fill the inns on market days. The other side complained about the cost and warned \
that a roof would only encourage people to linger and gossip instead of going home to work. In the end the \
market was built, two years late and a third over budget, and it has been used every Saturday since, except for \
a few weeks during the flood of 1912, when the stalls were moved up the hill to the churchyard.

Historians like this kind of story because it shows how ordinary people made decisions. The records are full of \
names that appear nowhere else: a rope maker who spoke for twenty minutes about drainage, a widow who offered \
her garden as the site and then withdrew the offer when she learned that pigs would be sold there. Their \
arguments were not always wise, but they were specific, and specific arguments are easier to understand a \
century and a half later than grand speeches about progress.

Water behaves in ways that seem simple until you try to explain them. It expands when it freezes, which is why \
ice floats and why lakes freeze from the top down, protecting the fish that live below. It can absorb a great \
deal of heat before its temperature rises, which is why coastal towns have milder winters than inland ones. And \
it dissolves more substances than almost any other liquid, which is why rivers carry minerals to the sea and why \
the sea is salty while the rain that falls on it is not.

A simple experiment shows the first of these properties. Fill a plastic bottle to the brim, close it tightly and \
leave it in a freezer overnight. In the morning the bottle will have bulged or split, because the ice needs about \
nine percent more room than the water did. Engineers who design pipes for cold climates think about this all the \
time. They bury the pipes below the depth at which the ground freezes, or they wrap them in insulation, or they \
let a little water run through them on the coldest nights so that it never stands still long enough to freeze.

Dear Margaret, thank you for your letter and for the seeds, which arrived safely and are now in a tray on the \
kitchen windowsill. The tomatoes came up first, as you said they would, and the peppers are just beginning to \
show. We have had a wet week, and the garden is more mud than soil, so I am glad to have something green \
indoors. Tom has finally mended the gate, although it now opens the wrong way and the dog has not forgiven \
him. The children are well. Anna has started learning the violin, and we are all learning patience. I hope your \
knee is better and that you will be able to visit in June, when the roses should be out. With love, Ellen.

To make a plain loaf of bread, mix five hundred grams of flour with ten grams of salt and seven grams of dried \
yeast. Add three hundred and fifty millilitres of warm water and stir until the dough comes together. Turn it out \
onto a lightly floured table and knead it for ten minutes, pushing it away with the heel of your hand and folding \
it back, until it feels smooth and springs back when pressed. Put it in a bowl, cover it with a cloth and leave it \
somewhere warm for an hour, or until it has doubled in size. Then shape it, put it in a greased tin, let it rise \
again for half an hour and bake it in a hot oven for about thirty-five minutes. It is done when the bottom sounds \
hollow when you tap it. Let it cool before cutting, however hard that is.

Maps are arguments as much as pictures. Every map leaves things out, and the choice of what to leave out says \
something about who made it and why. A map for sailors shows the depth of the water and the position of rocks \
but ignores the names of villages inland. A map for walkers shows footpaths, stiles and the steepness of hills \
but treats the sea as a blank blue edge. Even the direction that faces upward is a choice. Northern Europeans put \
north at the top, but many older maps put east there instead, toward the rising sun, which is where the word \
orientation comes from.

The harbour board still publishes a chart of the bay every five years. The most recent edition shows a sandbank \
that did not exist a generation ago, built up slowly by the currents that sweep around the headland. The \
fishermen knew about it long before the surveyors did. They had been steering around it for years, and when the \
new chart appeared, one of them pinned it to the wall of the harbour office with a note that said only: told you \
so.

In the evening the walk back from the lighthouse is slower. The tide has come in and covered the hard sand, so \
the path runs higher up, through soft dunes where every step slides a little. The lamp begins to turn just as \
the sun goes down, and for a few minutes both lights are in the sky at once, one sinking and one sweeping. Then \
the bakery comes into view, its windows yellow, and the smell of tomorrow's bread drifts out across the road.
"""
