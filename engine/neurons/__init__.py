"""One neuron seen from every view: passports, neuron sets and their overlaps.

Light on purpose: import the submodules (engine.neurons.passport, .sets, .overlap) for the API.
"""
