"""The same LSTM and GRU in Keras.  Both return their whole sequence, as torch's do (a torch
RNN's first output); the last step is taken afterwards, in both.  The GRU keeps Keras' default
``reset_after=True``, which is torch's cell."""

import keras
from keras import layers


def create(name: str = "recurrent", features: int = 5, hidden: int = 8, num_classes: int = 3) -> keras.Model:
    inputs = keras.Input((None, features))
    x = layers.LSTM(hidden, return_sequences=True, name="lstm")(inputs)
    x = layers.GRU(hidden, return_sequences=True, name="gru")(x)
    last = layers.Lambda(lambda t: t[:, -1], name="last")(x)
    return keras.Model(inputs, layers.Dense(num_classes, name="head")(last), name=name)
