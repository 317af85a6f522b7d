"""The fixed vocabulary of DESIGN.md §4 and DOMAIN.md §2: ids, their Chinese names, and data fields.

This is the one table read by the checker (which names are known), the data loader (which values
are valid) and the explainer (how to print them). Policies may declare further identities, diseases,
regions, funds and layers; these are the built-ins every policy can use.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final, Literal

SCHEMES: Final = MappingProxyType(
    {"employee": "职工", "resident": "城乡居民", "provincial_direct": "省直医保"}
)

KINDS: Final = MappingProxyType(
    {
        "inpatient": "住院",
        "outpatient": "普通门诊",
        "chronic_outpatient": "门诊慢特病",
        "high_value_drug": "高值药品",
        "maternity": "生育",
    }
)

DESIGNATIONS: Final = MappingProxyType(
    {"none": "非扶贫定点", "county_poverty": "县级扶贫定点", "city_poverty": "市级扶贫定点"}
)

IDENTITIES: Final = MappingProxyType(
    {
        "tekun": "特困人员",
        "orphan": "孤儿(含事实无人抚养儿童)",
        "dibao": "低保对象",
        "near_dibao": "低保边缘家庭成员",
        "relapse_poor": "返贫致贫人口",
        "monitored_assisted": "监测帮扶对象",
        "monitored_other": "其他纳入监测范围人口",
        "illness_poor": "因病致贫重病患者",
        "other_special": "其他特殊困难人员",
        "registered_poor": "建档立卡贫困人口",
        "ex_poor": "未纳入监测的脱贫人口",
    }
)

REGIONS: Final = MappingProxyType(
    {"liaozhong": "辽中区", "xinmin": "新民市", "kangping": "康平县", "faku": "法库县"}
)

# Diseases with an id of their own; every other disease is named by its Chinese name as a policy
# lists it (DOMAIN.md §2), and a policy may declare aliases for these.
DISEASES: Final = MappingProxyType(
    {
        "uremia": "尿毒症",
        "hemophilia": "血友病",
        "severe_mental": "重度精神病",
        "hypertension": "高血压",
        "diabetes": "糖尿病",
        "diabetes_insulin": "糖尿病(使用胰岛素)",
        "major_disease": "重大疾病",
    }
)

FUNDS: Final = MappingProxyType(
    {
        "basic_fund": "基本医保统筹基金",
        "civil_servant_fund": "公务员医疗补助资金",
        "large_supplement_fund": "大额补充医疗保险基金",
        "critical_illness_fund": "大病保险基金",
        "assistance_fund": "医疗救助基金",
        "provincial_finance": "省财政资金",
    }
)

SEXES: Final = ("F", "M")

FieldType = Literal["bool", "int", "money", "text", "kind", "level", "designation", "scheme", "sex"]
Entity = Literal["claim", "person"]

# Data fields a condition may test, with the entity they belong to and their type. Set-valued
# fields (identities, diseases, chronic) are tested with `has`, not with comparisons.
SCALAR_FIELDS: Final[Mapping[str, tuple[Entity, FieldType]]] = MappingProxyType(
    {
        "kind": ("claim", "kind"),
        "level": ("claim", "level"),
        "grassroots": ("claim", "bool"),
        "tcm_institution": ("claim", "bool"),
        "designation": ("claim", "designation"),
        "referred": ("claim", "bool"),
        "in_province": ("claim", "bool"),
        "in_pooling_area": ("claim", "bool"),
        "direct_settlement": ("claim", "bool"),
        "emergency": ("claim", "bool"),
        "pure_tcm": ("claim", "bool"),
        "tcm_cost": ("claim", "money"),
        "material_over_limit": ("claim", "money"),
        "bed_days": ("claim", "int"),
        "total_cost": ("claim", "money"),
        "eligible_cost": ("claim", "money"),
        "scheme": ("person", "scheme"),
        "retired": ("person", "bool"),
        "age": ("person", "int"),
        "sex": ("person", "sex"),
        "region": ("person", "text"),
        "resettled": ("person", "bool"),
    }
)

SET_FIELDS: Final[Mapping[str, Entity]] = MappingProxyType(
    {"diseases": "claim", "chronic": "person", "identities": "person"}
)

# Chinese spellings of field names, accepted wherever a field is named.
FIELD_ALIASES: Final = MappingProxyType(
    {
        "就诊类型": "kind",
        "医院等级": "level",
        "基层": "grassroots",
        "中医机构": "tcm_institution",
        "扶贫定点": "designation",
        "转诊": "referred",
        "省内": "in_province",
        "统筹区内": "in_pooling_area",
        "直接结算": "direct_settlement",
        "急诊": "emergency",
        "纯中医": "pure_tcm",
        "中医费用": "tcm_cost",
        "超限材料费用": "material_over_limit",
        "床日": "bed_days",
        "总费用": "total_cost",
        "合规费用": "eligible_cost",
        "险种": "scheme",
        "退休": "retired",
        "年龄": "age",
        "性别": "sex",
        "地区": "region",
        "异地安置": "resettled",
        "病种": "diseases",
        "慢病认定": "chronic",
        "身份": "identities",
    }
)

# Values written in Chinese in a policy map to their ids (kinds, schemes, designations, identities).
VALUE_ALIASES: Final = MappingProxyType(
    {
        **{zh: id_ for id_, zh in KINDS.items()},
        **{zh: id_ for id_, zh in SCHEMES.items()},
        **{zh: id_ for id_, zh in DESIGNATIONS.items()},
        **{zh: id_ for id_, zh in IDENTITIES.items()},
        **{zh: id_ for id_, zh in REGIONS.items()},
        "特困": "tekun",
        "孤儿": "orphan",
        "低保": "dibao",
        "低保边缘": "near_dibao",
        "居民": "resident",
        "省直": "provincial_direct",
    }
)

CLAIM_COLUMNS_REQUIRED: Final = (
    "claim_id",
    "person_id",
    "date",
    "kind",
    "hospital_level",
    "total_cost",
    "eligible_cost",
)
PERSON_COLUMNS_REQUIRED: Final = ("person_id", "scheme")
