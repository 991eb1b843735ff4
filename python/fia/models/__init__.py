"""Model layers composed of fia operators, with their references and weight loaders.

fia.models.dsa_config     DSAConfig, DEEPSEEK_V32, GLM5, small_config
fia.models.dsa_weights    HF parameter names of one layer, seeded random weights, safetensors I/O
fia.models.dsa_reference  an independent float64 reference of one DSA attention layer
"""
