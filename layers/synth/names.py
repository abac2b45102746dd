"""Portuguese place and street names for the synthetic demo city.

Some are borrowed from Cuiabá's real neighbourhoods and avenues for
flavour; the geometry they are attached to is invented.
"""
from __future__ import annotations

DISTRICTS = [
    "Porto", "Boa Esperança", "Coxipó", "Jardim Itália", "Bandeirantes", "Goiabeiras",
    "Duque de Caxias", "Araés", "Lixeira", "Poção", "Quilombo", "Bosque da Saúde",
    "Jardim das Américas", "Santa Rosa", "Morada do Ouro", "Planalto", "Jardim Vitória",
    "Pedra Noventa", "Tijucal", "Santa Isabel", "Cidade Alta", "Dom Aquino", "Verdão",
    "Ribeirão do Lipa", "Jardim Imperial", "Pascoal Ramos",
]
CENTRAL_DISTRICTS = ("Centro Norte", "Centro Sul")

AVENUES = [
    "Avenida Fernando Corrêa", "Avenida Historiador Rubens de Mendonça", "Avenida Isaac Póvoas",
    "Avenida Tenente Coronel Duarte", "Avenida Carmindo de Campos", "Avenida Dom Bosco",
    "Avenida Beira Rio", "Avenida das Torres", "Avenida do CPA", "Avenida Generoso Ponce",
]
RING_ROADS = ["Avenida Miguel Sutil", "Avenida Contorno Leste"]
STREET_PREFIXES = ["Rua", "Rua", "Rua", "Travessa", "Alameda"]
COLLECTOR_PREFIXES = ["Avenida", "Rua"]
GIVEN = [
    "João", "Maria", "Antônio", "Francisca", "José", "Benedita", "Joaquim", "Ana", "Manoel", "Rosa",
    "Pedro", "Luiza", "Cândido", "Teresa", "Estevão", "Clara", "Barão", "Dona", "Padre", "Comandante",
]
FAMILY = [
    "Murtinho", "Celestino", "Pimentel", "Mendonça", "Rondon", "Ponce", "Corrêa", "Campos", "Duarte",
    "Póvoas", "Costa", "Almeida", "Moreira", "Siqueira", "Ribeiro", "Figueiredo", "Paes de Barros",
    "Alencastro", "de Melgaço", "Leite",
]
NATURE = [
    "das Palmeiras", "dos Ipês", "das Acácias", "dos Buritis", "das Mangueiras", "do Pequi",
    "dos Jatobás", "das Orquídeas", "dos Bem-te-vis", "das Seriemas", "do Cerrado", "do Pantanal",
    "das Araras", "dos Tucanos", "da Aroeira", "do Cajueiro",
]
PARKS = [
    "Parque Mãe Bonifácia", "Parque Massairo Okamura", "Parque Zé Bolo Flô", "Horto Florestal",
    "Parque das Águas", "Parque Tia Nair",
]
RIVERS = ["Rio Cuiabá", "Rio Coxipó"]


def street_name(rng, prefixes=STREET_PREFIXES) -> str:
    """A plausible street name: ``Rua Pedro Celestino``, ``Travessa dos Ipês``..."""
    prefix = prefixes[int(rng.integers(len(prefixes)))]
    if rng.random() < 0.35:
        return f"{prefix} {NATURE[int(rng.integers(len(NATURE)))]}"
    return f"{prefix} {GIVEN[int(rng.integers(len(GIVEN)))]} {FAMILY[int(rng.integers(len(FAMILY)))]}"
