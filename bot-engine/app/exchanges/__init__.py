"""The exchange layer: the adapter interface (`base`), its errors (`errors`), canonical
symbols (`symbols`), price feeds (`price_feed`) and the paper exchange (`paper`)."""
